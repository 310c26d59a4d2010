"""Audio-visual sync check: at which lag are mouth opening and audio loudness most alike?

Weight-free and reusable (the evaluation code may use it on any video with a mouth track).
Convention: a positive lag means the mouth moves *later* than the sound.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfiltfilt

from ..types import LipSyncInputError


def audio_envelope(
    audio: np.ndarray,
    sample_rate: int,
    fps: float,
    n_frames: int | None = None,
    band: tuple[float, float] | None = (300.0, 2500.0),
) -> np.ndarray:
    """Log energy per video frame of the audio band-passed to ``band`` Hz (where vowels, i.e. open mouths, are loud).

    Frame k: a window of one frame period centred at time k / fps. ``band=None`` keeps the full band.
    """
    audio = np.asarray(audio, np.float64).reshape(-1)
    if band is not None and len(audio) > 64:
        sos = butter(4, [band[0], min(band[1], 0.45 * sample_rate)], "bandpass", fs=sample_rate, output="sos")
        audio = sosfiltfilt(sos, audio)
    if n_frames is None:
        n_frames = int(np.ceil(len(audio) / sample_rate * fps))
    hop = sample_rate / fps
    half = int(round(hop / 2))
    padded = np.pad(audio, (half, half + int(np.ceil(hop)) + 1))
    csum = np.concatenate([[0.0], np.cumsum(padded**2)])
    starts = np.round(np.arange(n_frames) * hop).astype(np.int64)
    ends = np.minimum(starts + 2 * half, len(padded))
    starts = np.minimum(starts, len(padded))
    energy = (csum[ends] - csum[starts]) / np.maximum(ends - starts, 1)
    return np.log(energy + 1e-8).astype(np.float32)


def lag_correlations(mouth_opening: np.ndarray, audio_envelope: np.ndarray, max_lag: int) -> np.ndarray:
    """Pearson correlation of mouth[t] with audio[t - lag] for lag in -max_lag..max_lag (2 * max_lag + 1,)."""
    m = np.asarray(mouth_opening, np.float64).reshape(-1)
    a = np.asarray(audio_envelope, np.float64).reshape(-1)
    n = min(len(m), len(a))
    if n < 2 * max_lag + 3:
        raise LipSyncInputError(
            f"mouth_opening/audio_envelope: {n} frames are too few for max_lag={max_lag}; give a longer clip"
        )
    m, a = m[:n], a[:n]
    out = np.empty(2 * max_lag + 1)
    for i, lag in enumerate(range(-max_lag, max_lag + 1)):
        if lag >= 0:
            x, y = m[lag:], a[: n - lag]
        else:
            x, y = m[: n + lag], a[-lag:]
        x, y = x - x.mean(), y - y.mean()
        den = np.sqrt((x * x).sum() * (y * y).sum())
        out[i] = (x * y).sum() / den if den > 0 else 0.0
    return out


def best_lag(mouth_opening: np.ndarray, audio_envelope: np.ndarray, max_lag: int = 5) -> int:
    """The lag (frames, positive = mouth later than sound) where the two signals correlate most."""
    corr = lag_correlations(mouth_opening, audio_envelope, max_lag)
    return int(np.argmax(corr)) - max_lag
