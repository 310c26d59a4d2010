"""Rigid alignment of face meshes to the canonical face: the rotation is the head pose.

Only the ``RIGID`` points (eyes, nose, upper face oval) enter the fit, so an opening jaw
or a smile does not tilt the estimated head. Aligned coordinates are in IOD units of the
canonical face (see lipsync_core/face/template.py): x right, y down, z away from the camera.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.spatial.transform import Rotation

from ..face import topology
from ..face.template import canonical_face
from ..types import LipSyncInputError

RIGID_INDICES = topology.as_array(topology.RIGID)


class Alignment(NamedTuple):
    """``landmarks ~= scale * aligned @ rotation^T + translation`` per frame."""

    aligned: np.ndarray  # (T, 478, 3) in IOD units of the reference
    rotation: np.ndarray  # (T, 3, 3) reference -> frame
    scale: np.ndarray  # (T,) frame units per aligned unit (pixels per IOD for image landmarks)
    translation: np.ndarray  # (T, 3)


def similarity_3d(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched Umeyama: s, R, t minimising |s R src + t - dst|^2. src (N, 3) or (T, N, 3); dst (T, N, 3)."""
    dst = np.asarray(dst, dtype=np.float64)
    src = np.broadcast_to(np.asarray(src, dtype=np.float64), dst.shape)
    mu_s, mu_d = src.mean(axis=-2), dst.mean(axis=-2)
    s0, d0 = src - mu_s[..., None, :], dst - mu_d[..., None, :]
    cov = np.einsum("tni,tnj->tij", d0, s0) / src.shape[-2]
    u, sig, vt = np.linalg.svd(cov)
    sign = np.sign(np.linalg.det(u @ vt))
    sign[sign == 0] = 1.0
    d = np.ones_like(sig)
    d[..., -1] = sign
    rot = (u * d[..., None, :]) @ vt
    var_s = (s0**2).sum(axis=(-2, -1)) / src.shape[-2]
    scale = (sig * d).sum(axis=-1) / np.maximum(var_s, 1e-12)
    trans = mu_d - scale[..., None] * np.einsum("tij,tj->ti", rot, mu_s)
    return scale, rot, trans


def procrustes_align(landmarks: np.ndarray, reference: np.ndarray | None = None) -> Alignment:
    """Align (T, 478, 3) (or (478, 3)) meshes to ``reference`` (default: the canonical face) on RIGID points."""
    lm = np.asarray(landmarks, dtype=np.float64)
    single = lm.ndim == 2
    if single:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[1] <= RIGID_INDICES.max() or lm.shape[2] != 3:
        raise LipSyncInputError(f"landmarks: expected (T, 478, 3) face-mesh points, got {lm.shape}.")
    if not np.isfinite(lm).all():
        raise LipSyncInputError("landmarks: contain NaN or inf; drop or interpolate frames without a face first.")
    ref = canonical_face() if reference is None else np.asarray(reference, dtype=np.float64)
    scale, rot, trans = similarity_3d(ref[RIGID_INDICES], lm[:, RIGID_INDICES])
    aligned = np.einsum("tnj,tjk->tnk", lm - trans[:, None, :], rot) / scale[:, None, None]
    out = Alignment(
        aligned.astype(np.float32), rot.astype(np.float32), scale.astype(np.float32), trans.astype(np.float32)
    )
    if single:
        return Alignment(out.aligned[0], out.rotation[0], out.scale[0], out.translation[0])
    return out


def rotation_to_vector(rotation: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations -> (T, 3) axis-angle vectors (radians): the renderer's 3 pose params."""
    r = np.asarray(rotation, dtype=np.float64)
    return Rotation.from_matrix(r.reshape(-1, 3, 3)).as_rotvec().reshape(r.shape[:-2] + (3,)).astype(np.float32)


def vector_to_rotation(vector: np.ndarray) -> np.ndarray:
    """(T, 3) axis-angle vectors -> (T, 3, 3) rotations."""
    v = np.asarray(vector, dtype=np.float64)
    return Rotation.from_rotvec(v.reshape(-1, 3)).as_matrix().reshape(v.shape[:-1] + (3, 3)).astype(np.float32)
