"""What the nodes show: the predicted lips drawn on the frames, the attention map, and the bounded payload the
web extension draws after a run (web/js/stylelipsync.js).

The Predict-lip-motion view reads
``ui["stylelipsync_motion"] = [{"fps", "opening": [T], "envelope": [T], "attention": {"rows", "cols", "values"}}]``.
A long video has tens of thousands of frames and a (T, n) attention map; it is reduced here (mean over bins)
so the websocket message stays small. Presentation only (numpy); the geometry is lipsync_core's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..lipsync_core.types import AudioFeatures, FaceTrack, LipMotion

if TYPE_CHECKING:
    from ..lipsync_core.motion import MouthModel

MOTION_KEY = "stylelipsync_motion"
TEXT_KEY = "stylelipsync_text"


def _bin_mean(values: np.ndarray, bins: int, axis: int) -> np.ndarray:
    """Means over ``bins`` near-equal consecutive groups along ``axis`` (no-op when already small)."""
    n = values.shape[axis]
    if n <= bins:
        return values
    edges = np.linspace(0, n, bins + 1).round().astype(int)
    sums = np.add.reduceat(values, edges[:-1], axis=axis)
    counts = np.diff(edges).reshape([-1 if a == axis else 1 for a in range(values.ndim)])
    return sums / counts


def _curve(values: Any, max_points: int) -> list[float]:
    if values is None:
        return []
    arr = np.nan_to_num(np.asarray(values, dtype=np.float64).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    return np.round(_bin_mean(arr, max_points, 0), 5).tolist()


def motion_view_payload(
    fps: float,
    opening: Any,
    envelope: Any = None,
    attention: Any = None,
    max_points: int = 2000,
    max_rows: int = 256,
    max_cols: int = 256,
) -> dict[str, list[dict[str, Any]]]:
    """The ``ui`` dict of the Predict-lip-motion node: curves (T,) and attention (T, n), reduced for display."""
    item: dict[str, Any] = {
        "fps": float(fps),
        "opening": _curve(opening, max_points),
        "envelope": _curve(envelope, max_points),
    }
    if attention is not None:
        att = np.nan_to_num(np.asarray(attention, dtype=np.float64), nan=0.0)
        if att.ndim == 2 and att.size:
            att = _bin_mean(_bin_mean(att, max_rows, 0), max_cols, 1)
            lo, hi = float(att.min()), float(att.max())
            scaled = (att - lo) / (hi - lo) if hi > lo else np.zeros_like(att)
            item["attention"] = {
                "rows": int(att.shape[0]),
                "cols": int(att.shape[1]),
                "values": np.round(scaled, 3).reshape(-1).tolist(),
            }
    return {MOTION_KEY: [item]}


# ----------------------------------------------------------------------------- pictures

PREDICTED = np.array([0.1, 1.0, 0.2], np.float32)  # green
TRACKED = np.array([1.0, 0.15, 0.1], np.float32)  # red
_COLORMAP = np.array(  # dark blue -> purple -> orange -> yellow (perceptually ordered, like inferno)
    [[0.0, 0.0, 0.02], [0.25, 0.04, 0.43], [0.58, 0.15, 0.40], [0.87, 0.32, 0.23], [0.99, 0.65, 0.04],
     [0.98, 1.0, 0.64]], np.float32,
)  # fmt: skip


def lips_in_image(track: FaceTrack, mouth: MouthModel, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, tracked) lip points in image pixels, (T, 40, 2) each: predicted params put on each frame's head."""
    from ..lipsync_core.motion import LIP_INDICES, NUM_LIP_VERTICES, procrustes_align

    align = procrustes_align(track.landmarks, mouth.mean_face)
    neutral = mouth.neutral_shape(track.landmarks[track.usable])
    lips = mouth.decode(params, neutral=neutral)[:, :NUM_LIP_VERTICES]  # aligned, IOD units
    placed = align.scale[:, None, None] * np.einsum("tvk,tjk->tvj", lips, align.rotation) + align.translation[:, None]
    return placed[..., :2], track.landmarks[:, LIP_INDICES, :2]


def _dots(frames: np.ndarray, points: np.ndarray, rows: np.ndarray, color: np.ndarray, radius: int) -> None:
    """Paint square dots at ``points`` (len(rows), P, 2) of frames ``rows``, in place."""
    if not len(rows):
        return
    h, w = frames.shape[1:3]
    offsets = np.arange(-radius, radius + 1)
    dy, dx = [a.reshape(-1) for a in np.meshgrid(offsets, offsets, indexing="ij")]
    xs = np.clip(np.rint(points[..., 0])[..., None] + dx, 0, w - 1).astype(np.int64)
    ys = np.clip(np.rint(points[..., 1])[..., None] + dy, 0, h - 1).astype(np.int64)
    ts = np.broadcast_to(rows[:, None, None], xs.shape)
    frames[ts, ys, xs] = color


def draw_mouths(frames: np.ndarray, track: FaceTrack, mouth: MouthModel, params: np.ndarray) -> np.ndarray:
    """Frames with the tracked lips (red) and the predicted lips (green); face-less frames untouched."""
    out = np.array(frames, dtype=np.float32, copy=True)
    rows = np.flatnonzero(track.usable)
    if not len(rows):
        return out
    predicted, tracked = lips_in_image(track, mouth, params)
    radius = max(1, int(round(min(out.shape[1:3]) / 256)))
    _dots(out, tracked[rows], rows, TRACKED, radius)
    _dots(out, predicted[rows], rows, PREDICTED, radius)
    return out


def attention_picture(attention: np.ndarray | None, size: int = 512) -> np.ndarray:
    """(T, n) attention -> [H, W, 3] float heat map (rows = frames, columns = reference frames)."""
    if attention is None or np.asarray(attention).size == 0:
        return np.zeros((64, 64, 3), np.float32)
    att = np.nan_to_num(np.asarray(attention, np.float64))
    att = _bin_mean(_bin_mean(att, size, 0), size, 1)
    lo, hi = att.min(), att.max()
    scaled = (att - lo) / (hi - lo) if hi > lo else np.zeros_like(att)
    rep_r, rep_c = max(1, size // (2 * att.shape[0])), max(1, size // (2 * att.shape[1]))
    scaled = np.repeat(np.repeat(scaled, rep_r, axis=0), rep_c, axis=1)
    pos = scaled * (len(_COLORMAP) - 1)
    lo_i = np.floor(pos).astype(int).clip(0, len(_COLORMAP) - 2)
    frac = (pos - lo_i)[..., None].astype(np.float32)
    return _COLORMAP[lo_i] * (1 - frac) + _COLORMAP[lo_i + 1] * frac


def motion_curves(mouth: MouthModel, motion: LipMotion, features: AudioFeatures) -> tuple[np.ndarray, np.ndarray]:
    """(mouth opening of the predicted motion, audio level 0..1) per frame, for the node's view."""
    from ..lipsync_core.motion import MOUTH_INDICES, mouth_opening

    mesh = np.broadcast_to(mouth.mean_face, (len(motion), *mouth.mean_face.shape)).copy()
    mesh[:, MOUTH_INDICES] = mouth.decode(motion.params)
    opening = mouth_opening(mesh)
    level = np.asarray(features.features, np.float64).mean(axis=1)
    span = level.max() - level.min()
    envelope = (level - level.min()) / span if span > 0 else np.zeros_like(level)
    if features.silence is not None:
        envelope = np.where(features.silence, 0.0, envelope)
    return opening, envelope
