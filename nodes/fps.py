"""The frame rate of the frames a graph gives us: from a FLOAT/INT, VHS_VIDEOINFO, or a core VIDEO.

Never assumed: a lip-sync node takes fps from its inputs (VideoHelperSuite's ``video_info``, the
``fps`` output of GetVideoComponents, or any FLOAT), in the order the node lists them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

from ._core import LipSyncInputError

VIDEO_INFO_KEYS = ("loaded_fps", "source_fps", "fps", "frame_rate")
"""VHS_VIDEOINFO keys, best first: ``loaded_fps`` is the rate of the frames VHS actually output
(after force_rate and select_every_nth); ``source_fps`` is the file's own rate."""


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        fps = float(value)  # int, float, numpy scalar, fractions.Fraction
    except (TypeError, ValueError):
        return None
    return fps if math.isfinite(fps) and fps > 0 else None


def fps_of(value: Any) -> float | None:
    """The fps carried by one input, or None when it carries none (unconnected, 0, unknown type)."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, Real):
        return _positive(value)
    if isinstance(value, Mapping):
        for key in VIDEO_INFO_KEYS:
            fps = _positive(value.get(key))
            if fps is not None:
                return fps
        return None
    if type(value).__name__ == "VideoFromFile":  # core VIDEO from a file: read the header, decode nothing
        fps = _file_video_fps(value)
        if fps is not None:
            return fps
    get_components = getattr(value, "get_components", None)  # comfy_api VideoInput (core VIDEO)
    if callable(get_components):
        return _positive(getattr(get_components(), "frame_rate", None))
    for attr in ("frame_rate", "fps"):
        fps = _positive(getattr(value, attr, None))
        if fps is not None:
            return fps
    return _positive(value) if hasattr(value, "__float__") else None  # e.g. a 0-dim tensor


def _file_video_fps(video: Any) -> float | None:
    """The stream's frame rate from the container header (VideoFromFile.get_components decodes every frame)."""
    try:
        import av

        source = video.get_stream_source()
        if hasattr(source, "seek"):
            source.seek(0)
        with av.open(source) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
        if hasattr(source, "seek"):
            source.seek(0)
        return _positive(rate)
    except Exception:  # noqa: BLE001 - fall back to decoding through get_components
        return None


def resolve_fps(*candidates: tuple[str, Any]) -> float:
    """The first candidate ``(input name, value)`` that carries a frame rate.

    Raises a one-line LipSyncInputError naming the inputs when none does.
    """
    for _name, value in candidates:
        fps = fps_of(value)
        if fps is not None:
            return fps
    names = " or ".join(name for name, _ in candidates) or "fps"
    raise LipSyncInputError(
        f"{names}: no frame rate given; connect VHS video_info, GetVideoComponents' fps, or set a FLOAT fps > 0."
    )
