"""What the renderer is conditioned on, built the same way for training and inference.

- the masked input face (lower half blanked) whose latent gives the clean upper context;
- the motion windows: per frame, a window of [mouth params, identity code, head rotation];
- the reference faces: a few frames of the same video spread over mouth openness (IP_LAP).
"""

from __future__ import annotations

import numpy as np
import torch

from ..types import LipSyncInputError


def mask_lower_half(crops: torch.Tensor) -> torch.Tensor:
    """Blank (set to 0 = black) the lower half of face crops [B, S, S, 3] or [B, 3, S, S].

    The paper masks the lower half of the input face before encoding it; the renderer
    only ever sees the upper half of the frame being repainted.
    """
    out = crops.clone()
    if out.shape[-1] == 3 and out.shape[-2] != 3:  # channels last
        out[:, out.shape[1] // 2 :] = 0
    else:
        out[..., out.shape[-2] // 2 :, :] = 0
    return out


def motion_windows(
    params: np.ndarray, identity: np.ndarray, rotations: np.ndarray, window: int
) -> np.ndarray:
    """Per-frame motion features (T, window, 13 + id_dim + 3), windows centred, ends edge-replicated.

    params (T, 13), identity (id_dim,) for the person or (T, id_dim), rotations (T, 3) axis-angle.
    """
    params = np.asarray(params, dtype=np.float32)
    t = len(params)
    identity = np.asarray(identity, dtype=np.float32)
    if identity.ndim == 1:
        identity = np.broadcast_to(identity, (t, identity.shape[0]))
    rotations = np.asarray(rotations, dtype=np.float32)
    if len(identity) != t or len(rotations) != t:
        raise LipSyncInputError(
            f"motion: {t} frames of mouth params but {len(identity)} identity and {len(rotations)} rotation rows."
        )
    feats = np.concatenate([params, identity, rotations], axis=1)
    half = window // 2
    idx = np.clip(np.arange(t)[:, None] + np.arange(-half, half + 1)[None, :], 0, t - 1)
    return feats[idx]


def frames_away_from(usable: np.ndarray, targets, margin: int = 2) -> np.ndarray:
    """``usable`` without the frames within ``margin`` of any target frame: reference candidates that cannot
    hand the renderer its answer (training and evaluation). All of ``usable`` when that leaves nothing."""
    usable = np.asarray(usable, bool)
    allowed = usable.copy()
    for k in np.asarray(targets, int).ravel():
        allowed[max(int(k) - margin, 0): int(k) + margin + 1] = False
    return allowed if allowed.any() else usable


def choose_reference_frames(openness: np.ndarray, usable: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` usable frames spread over mouth openness (closed ... open), as IP_LAP does.

    Spreading over openness shows the renderer the person's teeth and lips in several states.
    """
    candidates = np.flatnonzero(np.asarray(usable, bool))
    if len(candidates) == 0:
        raise LipSyncInputError("reference frames: no frame has a face; give a video in which the face is visible.")
    order = candidates[np.argsort(np.asarray(openness)[candidates], kind="stable")]
    if count >= len(order):
        return np.sort(order)
    quantiles = np.linspace(0.1, 0.9, count) if count > 1 else np.array([0.5])
    picks = order[np.round(quantiles * (len(order) - 1)).astype(int)]
    return np.sort(np.unique(picks))


def nearest_by_opening(reference_openness: np.ndarray, target_openness: np.ndarray) -> np.ndarray:
    """For each target frame, the index of the reference whose mouth opening is nearest: the renderer's
    aligned reference (copy path) shows teeth and lips in about the state the frame needs."""
    ref = np.asarray(reference_openness, np.float64).ravel()
    target = np.asarray(target_openness, np.float64).ravel()
    return np.argmin(np.abs(target[:, None] - ref[None, :]), axis=1)


def with_clean_upper(generated: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The latent to decode [B, C, h, w]: the clean crop's upper half beside the generated lower half.

    The renderer learns to produce the lower half of the *clean* crop's latent, so this pair is what the
    VAE was trained to decode. Decoding the masked crop's upper half instead (the context the renderer
    reads) put a seam across the upper lip: that half encodes an edge to a black box (issue 15).
    """
    split = generated.shape[-2] // 2
    return torch.cat([clean[..., :split, :].to(generated.dtype), generated[..., split:, :]], dim=-2)
