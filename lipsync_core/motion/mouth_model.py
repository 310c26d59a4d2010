"""The linear mouth model: the pack's stand-in for the paper's 13 mouth 3DMM coefficients.

Geometry (docs/FRONTEND.md, "Mouth model"):
- each mesh is Procrustes-aligned on the RIGID points to the model's mean face, which puts it
  in IOD units (eye-centre distance 1), x right, y down, z away from the camera;
- the mouth vertices are ``MOUTH_INDICES``: the 40 lip points (``topology.LIPS``, sorted) then
  the 19 jaw points (``topology.JAW``): V = 59;
- a person's *neutral* mouth is the mean of their closed-mouth frames (the ``neutral_quantile``
  of frames with the smallest inner-lip gap); expression = aligned mouth - neutral;
- mouth params (K = 13) are the PCA coefficients of the expression: ``mouth = neutral + mean + p @ C``;
- identity is a low-dimensional code (default 16) of the person's neutral full mesh (PCA over people).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..face import topology
from ..face.template import canonical_face
from ..types import NUM_LANDMARKS, NUM_MOUTH_PARAMS, LipSyncInputError
from ..weights import load_tensors, save_tensors
from .procrustes import RIGID_INDICES, procrustes_align, similarity_3d

LIP_INDICES = np.asarray(topology.LIPS, dtype=np.int64)
MOUTH_INDICES = np.concatenate([LIP_INDICES, topology.as_array(topology.JAW)])
NUM_LIP_VERTICES = len(LIP_INDICES)
NUM_MOUTH_VERTICES = len(MOUTH_INDICES)
_UPPER_INNER = topology.UPPER_INNER_LIP
_LOWER_INNER = topology.LOWER_INNER_LIP
KIND = "mouth_model"
FORMAT_VERSION = 1


def mouth_opening(aligned: np.ndarray) -> np.ndarray:
    """Inner-lip gap (T,) of aligned (T, 478, 3) meshes, in IOD units."""
    return np.linalg.norm(aligned[..., _LOWER_INNER, :] - aligned[..., _UPPER_INNER, :], axis=-1)


def _as_tracks(tracks) -> list[np.ndarray]:
    if isinstance(tracks, np.ndarray):
        tracks = [tracks]
    out = []
    for i, t in enumerate(tracks):
        t = np.asarray(t, dtype=np.float64)
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3 or t.shape[1:] != (NUM_LANDMARKS, 3) or len(t) == 0:
            raise LipSyncInputError(f"landmarks[{i}]: expected (T, 478, 3) face meshes, got {t.shape}.")
        if not np.isfinite(t).all():
            raise LipSyncInputError(f"landmarks[{i}]: contain NaN/inf; keep only usable frames of the track.")
        out.append(t)
    if not out:
        raise LipSyncInputError("landmarks: no tracks given; fit the mouth model on at least one track.")
    return out


@dataclass
class MouthModel:
    """A fitted linear mouth model (all arrays float32; see the module docstring for the maths)."""

    mean_face: np.ndarray  # (478, 3) reference of the alignment, IOD units
    neutral_mean: np.ndarray  # (V, 3) average neutral mouth over the people fitted
    expr_mean: np.ndarray  # (V*3,) mean expression offset
    components: np.ndarray  # (K, V*3) orthonormal rows
    explained_variance: np.ndarray  # (K,) variance of each param on the fit data
    total_variance: float  # total expression variance on the fit data
    id_mean: np.ndarray  # (478*3,)
    id_components: np.ndarray  # (id_dim, 478*3) orthonormal rows (zero rows when fewer people than id_dim)
    neutral_quantile: float = 0.2
    info: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ sizes

    @property
    def num_params(self) -> int:
        return int(self.components.shape[0])

    @property
    def identity_dim(self) -> int:
        return int(self.id_components.shape[0])

    @property
    def num_vertices(self) -> int:
        return NUM_MOUTH_VERTICES

    @property
    def explained_variance_ratio(self) -> float:
        """Share of the fit data's expression variance that the K params explain."""
        return float(self.explained_variance.sum() / max(self.total_variance, 1e-20))

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls,
        tracks,
        num_params: int = NUM_MOUTH_PARAMS,
        identity_dim: int = 16,
        neutral_quantile: float = 0.2,
        iterations: int = 3,
    ) -> MouthModel:
        """Fit on a list of (T_i, 478, 3) landmark tracks (pixels or any unit; one person per track)."""
        tracks = _as_tracks(tracks)
        mean_face = np.asarray(canonical_face(), dtype=np.float64)
        for _ in range(iterations):  # generalised Procrustes: re-estimate the mean face, keep it canonical
            aligned = np.concatenate([procrustes_align(t, mean_face).aligned for t in tracks]).astype(np.float64)
            new_mean = aligned.mean(axis=0)
            s, r, t = similarity_3d(canonical_face()[RIGID_INDICES], new_mean[None, RIGID_INDICES])
            mean_face = ((new_mean - t[0]) @ r[0]) / s[0]  # same pose and IOD scale as the canonical face
        per_track = [procrustes_align(t, mean_face).aligned.astype(np.float64) for t in tracks]
        neutrals = np.stack([_neutral(a, neutral_quantile) for a in per_track])  # (P, 478, 3)
        expr = np.concatenate(
            [
                (a[:, MOUTH_INDICES] - n[MOUTH_INDICES]).reshape(len(a), -1)
                for a, n in zip(per_track, neutrals, strict=True)
            ]
        )
        if len(expr) < num_params + 1:
            raise LipSyncInputError(f"landmarks: {len(expr)} frames cannot fit {num_params} mouth params; give more.")
        expr_mean = expr.mean(axis=0)
        _, sig, vt = np.linalg.svd(expr - expr_mean, full_matrices=False)
        var = sig**2 / len(expr)
        comps = vt[:num_params]
        comps *= np.where(comps[np.arange(num_params), np.abs(comps).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
        flat_neutral = neutrals.reshape(len(neutrals), -1)
        id_mean = flat_neutral.mean(axis=0)
        id_comps = np.zeros((identity_dim, flat_neutral.shape[1]))
        if len(neutrals) > 1:
            _, id_sig, id_vt = np.linalg.svd(flat_neutral - id_mean, full_matrices=False)
            k = min(identity_dim, int((id_sig > 1e-9 * max(id_sig[0], 1e-30)).sum()))
            id_comps[:k] = id_vt[:k]
        return cls(
            mean_face=mean_face.astype(np.float32),
            neutral_mean=neutrals[:, MOUTH_INDICES].mean(axis=0).astype(np.float32),
            expr_mean=expr_mean.astype(np.float32),
            components=comps.astype(np.float32),
            explained_variance=var[:num_params].astype(np.float32),
            total_variance=float(var.sum()),
            id_mean=id_mean.astype(np.float32),
            id_components=id_comps.astype(np.float32),
            neutral_quantile=neutral_quantile,
            info={"num_tracks": len(tracks), "num_frames": int(len(expr))},
        )

    # ------------------------------------------------------------------ encode / decode

    def align(self, landmarks: np.ndarray) -> np.ndarray:
        """(T, 478, 3) landmarks -> (T, 478, 3) aligned to the model's mean face (IOD units)."""
        return procrustes_align(_as_tracks(landmarks)[0], self.mean_face).aligned

    def neutral_shape(self, landmarks: np.ndarray) -> np.ndarray:
        """(478, 3) aligned neutral (closed-mouth) mesh of the person in a track."""
        return _neutral(self.align(landmarks).astype(np.float64), self.neutral_quantile).astype(np.float32)

    def identity(self, landmarks: np.ndarray | None = None, neutral: np.ndarray | None = None) -> np.ndarray:
        """(identity_dim,) identity code of a person, from their track or their neutral shape."""
        if neutral is None:
            if landmarks is None:
                raise LipSyncInputError("identity: give the person's landmarks or neutral shape.")
            neutral = self.neutral_shape(landmarks)
        return ((np.asarray(neutral, np.float32).reshape(-1) - self.id_mean) @ self.id_components.T).astype(np.float32)

    def identity_to_neutral(self, code: np.ndarray) -> np.ndarray:
        """(identity_dim,) code -> (478, 3) neutral mesh (approximate: the code is low-dimensional)."""
        return (self.id_mean + np.asarray(code, np.float32) @ self.id_components).reshape(NUM_LANDMARKS, 3)

    def _neutral_mouth(self, neutral: np.ndarray | None) -> np.ndarray:
        if neutral is None:
            return self.neutral_mean
        neutral = np.asarray(neutral, dtype=np.float32)
        return neutral[MOUTH_INDICES] if neutral.shape[0] == NUM_LANDMARKS else neutral.reshape(NUM_MOUTH_VERTICES, 3)

    def encode(self, landmarks: np.ndarray, neutral: np.ndarray | None = None) -> np.ndarray:
        """(T, 478, 3) landmarks -> (T, K) mouth params.

        neutral: the person's (478, 3) neutral shape (:meth:`neutral_shape`); default: estimated
        from these landmarks (fine for a clip of a few seconds; pass it for very short clips).
        """
        aligned = self.align(landmarks)
        if neutral is None:
            neutral = _neutral(aligned.astype(np.float64), self.neutral_quantile)
        mouth = aligned[:, MOUTH_INDICES].reshape(len(aligned), -1) - self._neutral_mouth(neutral).reshape(-1)
        return ((mouth - self.expr_mean) @ self.components.T).astype(np.float32)

    def decode(self, params: np.ndarray, neutral: np.ndarray | None = None) -> np.ndarray:
        """(T, K) params -> (T, V, 3) aligned mouth vertices (lips first, then jaw), IOD units."""
        params = np.asarray(params, dtype=np.float32)
        flat = params @ self.components + self.expr_mean + self._neutral_mouth(neutral).reshape(-1)
        return flat.reshape(params.shape[:-1] + (NUM_MOUTH_VERTICES, 3))

    def opening(self, params: np.ndarray, neutral: np.ndarray) -> np.ndarray:
        """Inner-lip gap (T,) of the mouth that ``params`` decode to on the person's (478, 3) neutral face."""
        verts = self.decode(params, neutral)
        full = np.repeat(np.asarray(neutral, np.float32)[None], len(verts), axis=0)
        full[:, MOUTH_INDICES] = verts
        return mouth_opening(full)

    # ------------------------------------------------------------------ torch views

    def components_tensor(self, device: str | torch.device = "cpu") -> torch.Tensor:
        """(13, V*3) float32 basis: vertex offsets (IOD units) per unit of each mouth param."""
        return torch.from_numpy(self.components.copy()).to(device)

    def mean_tensor(self, device: str | torch.device = "cpu") -> torch.Tensor:
        """(V*3,) average mouth (neutral mean + expression mean) in IOD units."""
        return torch.from_numpy((self.neutral_mean.reshape(-1) + self.expr_mean).copy()).to(device)

    def decode_torch(self, params: torch.Tensor) -> torch.Tensor:
        """Differentiable decode (..., K) -> (..., V, 3) with the average neutral (for vertex losses)."""
        flat = params @ self.components_tensor(params.device).to(params.dtype) + self.mean_tensor(params.device).to(
            params.dtype
        )
        return flat.reshape(params.shape[:-1] + (NUM_MOUTH_VERTICES, 3))

    # ------------------------------------------------------------------ files

    def config(self) -> dict[str, Any]:
        return {
            "num_params": self.num_params,
            "identity_dim": self.identity_dim,
            "num_vertices": NUM_MOUTH_VERTICES,
            "num_lip_vertices": NUM_LIP_VERTICES,
            "units": "aligned IOD units (eye-centre distance = 1)",
            "neutral_quantile": self.neutral_quantile,
            "total_variance": self.total_variance,
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "mean_face": torch.from_numpy(self.mean_face),
            "neutral_mean": torch.from_numpy(self.neutral_mean),
            "expr_mean": torch.from_numpy(self.expr_mean),
            "components": torch.from_numpy(self.components),
            "explained_variance": torch.from_numpy(self.explained_variance),
            "id_mean": torch.from_numpy(self.id_mean),
            "id_components": torch.from_numpy(self.id_components),
            "mouth_indices": torch.from_numpy(MOUTH_INDICES),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write a .safetensors file of kind 'mouth_model' (plain linear map, no pickle)."""
        return save_tensors(
            path, self.state_tensors(), kind=KIND, config=self.config(), format_version=FORMAT_VERSION, extra=self.info
        )

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], config: dict[str, Any], info: dict | None = None):
        """Rebuild from :meth:`state_tensors` + :meth:`config` (e.g. embedded in a motion checkpoint)."""
        idx = tensors["mouth_indices"].numpy()
        if not np.array_equal(idx, MOUTH_INDICES):
            raise LipSyncInputError("mouth model: its vertex subset differs from this pack's; re-fit the mouth model.")
        arr = {k: v.float().numpy() for k, v in tensors.items() if k != "mouth_indices"}
        return cls(
            mean_face=arr["mean_face"],
            neutral_mean=arr["neutral_mean"],
            expr_mean=arr["expr_mean"],
            components=arr["components"],
            explained_variance=arr["explained_variance"],
            total_variance=float(config["total_variance"]),
            id_mean=arr["id_mean"],
            id_components=arr["id_components"],
            neutral_quantile=float(config.get("neutral_quantile", 0.2)),
            info=dict(info or {}),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> MouthModel:
        wf = load_tensors(path, expected_kind=KIND, max_version=FORMAT_VERSION)
        return cls.from_tensors(wf.tensors, wf.config, wf.extra)


def _neutral(aligned: np.ndarray, quantile: float) -> np.ndarray:
    """Mean of the frames whose inner-lip gap is in the lowest ``quantile`` (at least one frame)."""
    gap = mouth_opening(aligned)
    k = max(int(np.ceil(quantile * len(gap))), 1)
    closed = np.argsort(gap, kind="stable")[:k]
    return aligned[closed].mean(axis=0)


def lip_vertices(vertices: np.ndarray) -> np.ndarray:
    """The lip points of (..., V, 3) mouth vertices or (..., 478, 3) meshes."""
    v = np.asarray(vertices)
    if v.shape[-2] == NUM_LANDMARKS:
        return v[..., LIP_INDICES, :]
    if v.shape[-2] == NUM_MOUTH_VERTICES:
        return v[..., :NUM_LIP_VERTICES, :]
    if v.shape[-2] == NUM_LIP_VERTICES:
        return v
    raise LipSyncInputError(
        f"vertices: {v.shape[-2]} points is neither 478, {NUM_MOUTH_VERTICES} nor {NUM_LIP_VERTICES}."
    )


def lip_lmd(pred_vertices: np.ndarray, true_vertices: np.ndarray) -> float:
    """LipLMD: mean Euclidean distance between corresponding lip points, in aligned IOD units.

    Both inputs are aligned, scale-normalised vertices (:meth:`MouthModel.decode` output, V = 59,
    or aligned 478-point meshes); only the 40 lip points count; mean over points and frames.
    """
    p, t = lip_vertices(pred_vertices), lip_vertices(true_vertices)
    if p.shape != t.shape:
        raise LipSyncInputError(f"lip_lmd: shapes differ, {p.shape} vs {t.shape}.")
    return float(np.linalg.norm(p.astype(np.float64) - t, axis=-1).mean())
