"""best_lag finds the offset between a mouth-opening curve and an audio envelope (pure numpy)."""

import numpy as np
import pytest

from lipsync_core.synthetic.sync_check import audio_envelope, best_lag, lag_correlations
from lipsync_core.types import LipSyncInputError


def smooth_random(n, seed):
    rng = np.random.default_rng(seed)
    x = np.convolve(rng.normal(size=n + 20), np.hanning(9), "same")[10:-10]
    return x


@pytest.mark.parametrize("shift", [-4, -1, 0, 2, 3, 5])
def test_best_lag_recovers_a_known_shift(shift):
    audio = smooth_random(300, 1)
    mouth = np.roll(audio, shift) + 0.3 * smooth_random(300, 2)  # positive shift: mouth later
    assert best_lag(mouth, audio, max_lag=6) == shift


def test_lag_correlations_shape_and_short_input():
    c = lag_correlations(np.arange(50.0), np.arange(50.0), 4)
    assert c.shape == (9,) and c[4] == pytest.approx(1.0)
    with pytest.raises(LipSyncInputError, match="too few"):
        best_lag(np.zeros(5), np.zeros(5), max_lag=4)


def test_audio_envelope_follows_loudness_per_frame():
    sr, fps = 16000, 25
    t = np.arange(sr * 2) / sr
    tone = np.sin(2 * np.pi * 700 * t) * (t > 1.0)  # silent first second, loud second
    env = audio_envelope(tone, sr, fps)
    assert env.shape == (50,)
    assert env[40] - env[10] > 10  # log energy: many nats louder
    assert np.argmax(np.diff(env)) in (24, 25)
