"""Pictures for checking stage 1 before rendering: lips drawn on frames, the attention map, the view's curves.

Presentation only (numpy; no OpenCV needed): the geometry comes from lipsync_core's mouth model and
Procrustes alignment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import core_module
from .ui_payload import _bin_mean

PREDICTED = np.array([0.1, 1.0, 0.2], np.float32)  # green
TRACKED = np.array([1.0, 0.15, 0.1], np.float32)  # red
_COLORMAP = np.array(  # dark blue -> purple -> orange -> yellow (perceptually ordered, like inferno)
    [[0.0, 0.0, 0.02], [0.25, 0.04, 0.43], [0.58, 0.15, 0.40], [0.87, 0.32, 0.23], [0.99, 0.65, 0.04],
     [0.98, 1.0, 0.64]], np.float32,
)  # fmt: skip


def lips_in_image(track: Any, mouth: Any, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, tracked) lip points in image pixels, (T, 40, 2) each: predicted params put on each frame's head."""
    mm = core_module("motion.mouth_model")
    align = core_module("motion.procrustes").procrustes_align(track.landmarks, mouth.mean_face)
    neutral = mouth.neutral_shape(track.landmarks[track.usable])
    lips = mouth.decode(params, neutral=neutral)[:, : mm.NUM_LIP_VERTICES]  # aligned, IOD units
    placed = align.scale[:, None, None] * np.einsum("tvk,tjk->tvj", lips, align.rotation) + align.translation[:, None]
    return placed[..., :2], track.landmarks[:, mm.LIP_INDICES, :2]


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


def draw_mouths(frames: np.ndarray, track: Any, mouth: Any, params: np.ndarray) -> np.ndarray:
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


def motion_curves(mouth: Any, motion: Any, features: Any) -> tuple[np.ndarray, np.ndarray]:
    """(mouth opening of the predicted motion, audio level 0..1) per frame, for the node's view."""
    mm = core_module("motion.mouth_model")
    mesh = np.broadcast_to(mouth.mean_face, (len(motion), *mouth.mean_face.shape)).copy()
    mesh[:, mm.MOUTH_INDICES] = mouth.decode(motion.params)
    opening = mm.mouth_opening(mesh)
    level = np.asarray(features.features, np.float64).mean(axis=1)
    span = level.max() - level.min()
    envelope = (level - level.min()) / span if span > 0 else np.zeros_like(level)
    if features.silence is not None:
        envelope = np.where(features.silence, 0.0, envelope)
    return opening, envelope
