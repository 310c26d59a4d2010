"""Visemes, coarticulation and styles (no TTS needed: hand-made phoneme timelines)."""

import numpy as np

from lipsync_core.synthetic.articulation import CHANNELS, SpeakerStyle, articulation_track, viseme_sequence
from lipsync_core.synthetic.tts import Phoneme

JAW, OPEN, SPREAD, ROUND = (CHANNELS.index(c) for c in ("jaw", "lips_open", "spread", "round"))


def timeline(symbols, dur=0.12):
    return [Phoneme(s, i * dur, (i + 1) * dur) for i, s in enumerate(symbols)]


def test_diphthongs_split_and_unknown_symbols_fall_back():
    assert viseme_sequence("'aI") == ("AA", "IH")
    assert viseme_sequence(",oU") == ("OH", "UW")
    assert viseme_sequence("p") == ("PBM",)
    assert viseme_sequence("Q9") == ("TDN",)


def test_bilabials_close_and_open_vowels_open():
    # "_ p 'a p 'a m _" at 100 fps: the lips must meet in the middle of each p/m and open on each a
    phons = timeline(["_", "p", "'a", "p", "'a", "m", "_"])
    fps = 100
    tr = articulation_track(phons, 84, fps)
    gap = tr[:, JAW] * 0.6 + tr[:, OPEN]  # roughly the inner-lip gap the rig makes
    at = lambda k: int(round((k + 0.5) * 0.12 * fps))  # noqa: E731
    for k in (1, 3, 5):  # p, p, m
        assert gap[at(k)] < 0.12, (k, gap[at(k)])
    for k in (2, 4):  # 'a: opens wide within its span
        span = gap[int(k * 0.12 * fps): int((k + 1) * 0.12 * fps)]
        assert span.max() > 0.5, (k, span.max())
    assert tr[0, JAW] < 0.05 and tr[-1, JAW] < 0.05  # rest at both ends


def test_rounded_and_spread_vowels():
    fps = 100
    oo = articulation_track(timeline(["_", "'u:", "_"], 0.2), 60, fps)
    ee = articulation_track(timeline(["_", "'i:", "_"], 0.2), 60, fps)
    assert oo[30, ROUND] > 0.8 and ee[30, ROUND] < 0.1
    assert ee[30, SPREAD] > 0.7 and oo[30, SPREAD] < 0


def test_coarticulation_anticipates_rounding():
    # in "s u:" the rounding starts during the /s/ (anticipation), unlike in "s i:"
    fps = 200
    su = articulation_track(timeline(["_", "s", "'u:", "_"], 0.15), 120, fps)
    si = articulation_track(timeline(["_", "s", "'i:", "_"], 0.15), 120, fps)
    mid_s = int(0.225 * fps)
    assert su[mid_s, ROUND] > si[mid_s, ROUND] + 0.1


def test_style_changes_shape_and_timing_and_is_seeded():
    phons = timeline(["_", "h", "'a", "l", "'oU", "_"])
    base = articulation_track(phons, 40, 50)
    wide = articulation_track(phons, 40, 50, SpeakerStyle(jaw_gain=1.5, spread_bias=0.3))
    assert np.allclose(wide[:, JAW], 1.5 * base[:, JAW], atol=1e-5)
    assert np.allclose(wide[:, SPREAD], base[:, SPREAD] + 0.3, atol=1e-5)
    late = articulation_track(phons, 40, 50, SpeakerStyle(lag_ms=40.0))
    # a 40 ms lag at 50 fps is 2 frames: the jaw curve moves 2 frames later
    assert np.abs(late[2:30, JAW] - base[0:28, JAW]).max() < 1e-4
    assert np.abs(late[:, JAW] - base[:, JAW]).max() > 0.1
    a = SpeakerStyle.sample(np.random.default_rng(5))
    assert a == SpeakerStyle.sample(np.random.default_rng(5))
    assert a != SpeakerStyle.sample(np.random.default_rng(6))
    assert SpeakerStyle.from_dict(a.to_dict()) == a
