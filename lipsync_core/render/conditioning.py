"""What the renderer is conditioned on, built the same way for training and inference.

- the masked input face (lower half blanked) whose latent gives the clean upper context;
- the motion windows: per frame, a window of [mouth params, identity code, head rotation];
- the reference faces: a few frames of the same video spread over mouth openness (IP_LAP);
- the mouth map: the lips the motion asks for, drawn where they go in the crop (our addition, DECISIONS).
"""

from __future__ import annotations

import numpy as np
import torch

from ..face import topology
from ..motion import MOUTH_INDICES, MouthModel, procrustes_align
from ..types import LipSyncInputError

# Channels of the mouth map: the outer-lip region (lips and opening), the opening alone, and the jaw below
# the mouth (its outline closed by the chord under the mouth corners), which drops as the mouth opens.
MOUTH_MAP_POLYGONS = (topology.LIPS_OUTER, topology.LIPS_INNER, topology.LOWER_JAW)
MOUTH_MAP_CHANNELS = len(MOUTH_MAP_POLYGONS)
MOUTH_MAP_SUPERSAMPLE = 4  # sub-cells per latent cell and axis: the map's values are area coverages
_POLYGON_VERTICES = [[list(MOUTH_INDICES).index(i) for i in polygon] for polygon in MOUTH_MAP_POLYGONS]


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


def usable_by_openness(openness: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Indices of the usable frames, from the most closed mouth to the widest open (ties in frame order);
    refused with one line when no frame has a face."""
    candidates = np.flatnonzero(np.asarray(usable, bool))
    if len(candidates) == 0:
        raise LipSyncInputError("reference frames: no frame has a face; give a video in which the face is visible.")
    return candidates[np.argsort(np.asarray(openness)[candidates], kind="stable")]


def choose_reference_frames(openness: np.ndarray, usable: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` usable frames spread over mouth openness (closed ... open), as IP_LAP does.

    Spreading over openness shows the renderer the person's teeth and lips in several states.
    """
    order = usable_by_openness(openness, usable)
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


def mouth_image_points(mouth: MouthModel, landmarks: np.ndarray, params: np.ndarray, neutral: np.ndarray
                       ) -> np.ndarray:
    """Image points (T, V, 2) of the mouth (lips, then jaw) that ``params`` decode to on the person's neutral
    face, placed with each frame's own head pose (from its landmarks (T, 478, 3)): where the motion's lips go."""
    pose = procrustes_align(np.asarray(landmarks, np.float32), mouth.mean_face)
    verts = mouth.decode(np.asarray(params, np.float32), neutral)
    image = pose.scale[:, None, None] * np.einsum("tnj,tkj->tnk", verts, pose.rotation)
    return (image + pose.translation[:, None, :])[..., :2].astype(np.float32)


def to_crop(points: np.ndarray, crop_transforms: np.ndarray) -> np.ndarray:
    """Image points (T, N, 2) -> crop pixels through each frame's image->crop similarity (T, 2, 3)."""
    m = np.asarray(crop_transforms, np.float32)
    return np.einsum("tij,tnj->tni", m[:, :, :2], points) + m[:, None, :, 2]


def mouth_map(crop_points: np.ndarray, crop_size: int, latent_size: int, chunk: int = 64) -> np.ndarray:
    """Mouth points in crop pixels (T, V, 2) -> the renderer's mouth map (T, C, h, w) float32 in 0..1.

    Each channel is a polygon's area coverage per latent cell (``MOUTH_MAP_SUPERSAMPLE``^2 samples a cell):
    the outer-lip region, the opening and the jaw under the mouth. Training draws it from the frame's true
    mouth params, inference from the predicted ones, with the same function, so the renderer learns to put
    the lips exactly there.
    """
    pts = np.asarray(crop_points, np.float32)
    if pts.ndim != 3 or pts.shape[1] != len(MOUTH_INDICES) or pts.shape[2] != 2:
        raise LipSyncInputError(f"mouth points have shape {pts.shape}; expected (T, {len(MOUTH_INDICES)}, 2).")
    res = latent_size * MOUTH_MAP_SUPERSAMPLE
    centres = (torch.arange(res, dtype=torch.float32) + 0.5) * (crop_size / res) - 0.5  # crop-pixel coordinates
    gy, gx = torch.meshgrid(centres, centres, indexing="ij")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # [P, 2]
    out = np.zeros((len(pts), MOUTH_MAP_CHANNELS, latent_size, latent_size), np.float32)
    for c, idx in enumerate(_POLYGON_VERTICES):
        for start in range(0, len(pts), chunk):
            poly = torch.from_numpy(pts[start:start + chunk, idx])  # [t, E, 2]
            inside = _inside(poly, grid).float().view(-1, 1, res, res)
            cover = torch.nn.functional.avg_pool2d(inside, MOUTH_MAP_SUPERSAMPLE)
            out[start:start + chunk, c] = cover[:, 0].numpy()
    return out


def _inside(poly: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Even-odd rule: [t, E, 2] closed polygons, [P, 2] points -> [t, P] inside."""
    a, b = poly, poly.roll(-1, dims=1)
    ax, ay, bx, by = (v[..., None] for v in (a[..., 0], a[..., 1], b[..., 0], b[..., 1]))  # [t, E, 1]
    px, py = grid[:, 0], grid[:, 1]  # [P]
    straddles = (ay > py) != (by > py)  # [t, E, P]
    x_cross = ax + (py - ay) * (bx - ax) / torch.where(by == ay, torch.ones_like(by), by - ay)
    crossings = (straddles & (px < x_cross)).sum(dim=1)
    return crossings % 2 == 1
