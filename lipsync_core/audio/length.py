"""Audio vs video length policies: which source frame each output frame shows, and the audio.

- ``loop``:          output follows the audio; the video repeats from its start.
- ``ping_pong``:     output follows the audio; the video plays forward, then backward, ...
- ``trim_to_audio``: output follows the audio; a longer video is cut, a shorter one holds its last frame.
- ``trim_to_video``: output follows the video; longer audio is cut, shorter audio is padded with silence.
- ``pad_silence``:   output is as long as the longer of the two; short audio gets silence,
                     a short video holds its last frame. Nothing is cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import LENGTH_POLICIES, LipSyncInputError
from .io import TARGET_RATE, duration_frames


@dataclass
class LengthMatch:
    """frame_indices: (T_out,) source video frame of each output frame; wave: audio of exactly T_out frames."""

    frame_indices: np.ndarray
    wave: np.ndarray
    num_frames: int
    policy: str
    note: str


def ping_pong_indices(num_source: int, num_out: int) -> np.ndarray:
    """0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... (no repeated end frames)."""
    if num_source == 1:
        return np.zeros(num_out, dtype=np.int64)
    period = 2 * num_source - 2
    k = np.arange(num_out) % period
    return np.where(k < num_source, k, period - k).astype(np.int64)


def match_length(
    num_frames: int,
    wave: np.ndarray,
    fps: float,
    policy: str = "loop",
    sample_rate: int = TARGET_RATE,
) -> LengthMatch:
    """Reconcile a video of ``num_frames`` with mono audio ``wave`` under ``policy`` (see module doc).

    The returned wave holds exactly round(T_out * sample_rate / fps) samples (cut or silence-padded).
    """
    if policy not in LENGTH_POLICIES:
        raise LipSyncInputError(f"length policy: {policy!r} is unknown; choose one of {', '.join(LENGTH_POLICIES)}.")
    if int(num_frames) < 1:
        raise LipSyncInputError(f"video: {num_frames} frames; give at least one frame.")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise LipSyncInputError(
            f"audio: expected non-empty mono samples, got shape {wave.shape}; pass audio_to_mono's output."
        )
    n_video = int(num_frames)
    n_audio = max(duration_frames(len(wave), sample_rate, fps), 1)
    if policy in ("loop", "ping_pong", "trim_to_audio"):
        n_out = n_audio
    elif policy == "trim_to_video":
        n_out = n_video
    else:
        n_out = max(n_video, n_audio)
    if policy == "loop":
        idx = np.arange(n_out) % n_video
    elif policy == "ping_pong":
        idx = ping_pong_indices(n_video, n_out)
    else:
        idx = np.minimum(np.arange(n_out), n_video - 1)
    n_samples = int(round(n_out * sample_rate / float(fps)))
    out = np.zeros(n_samples, dtype=np.float32)
    keep = min(n_samples, len(wave))
    out[:keep] = wave[:keep]
    notes = []
    if n_out < n_video:
        notes.append(f"video cut from {n_video} to {n_out} frames")
    elif n_out > n_video:
        how = {"loop": "looped", "ping_pong": "ping-ponged"}.get(policy, "last frame held")
        notes.append(f"video extended from {n_video} to {n_out} frames ({how})")
    if len(wave) > n_samples:
        notes.append(f"audio cut by {(len(wave) - n_samples) / sample_rate:.3f} s")
    elif len(wave) < n_samples:
        notes.append(f"audio padded with {(n_samples - len(wave)) / sample_rate:.3f} s of silence")
    return LengthMatch(idx.astype(np.int64), out, n_out, policy, "; ".join(notes) or "lengths already match")
