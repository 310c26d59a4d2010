"""What a node sends to the web extension after a run (``{"ui": {...}}``), bounded in size.

The Predict-lip-motion view (web/js/stylelipsync.js) reads
``ui["stylelipsync_motion"] = [{"fps", "opening": [T], "envelope": [T], "attention": {"rows", "cols", "values"}}]``.
A long video has tens of thousands of frames and a (T, n) attention map; this module reduces them
(mean over bins) so the websocket message stays small: at most ``max_points`` curve points and a
``max_rows`` x ``max_cols`` map with values scaled to 0..1, rounded to 3 decimals.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
