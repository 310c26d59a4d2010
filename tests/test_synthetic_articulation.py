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


def test_per_sound_style_is_seeded_and_leaves_the_global_parameters_alone():
    from lipsync_core.synthetic.articulation import SOUND_CLASSES, SOUND_TARGET_SIGMA

    a = SpeakerStyle.sample(np.random.default_rng(5))
    assert a.per_sound and len(a.sound_targets) == len(SOUND_CLASSES) == len(a.sound_lag_ms)
    assert a == SpeakerStyle.sample(np.random.default_rng(5))
    assert SpeakerStyle.from_dict(a.to_dict()) == a
    # the per-sound draws come after the global ones: the same speaker without them has the same globals
    g = SpeakerStyle.sample(np.random.default_rng(5), per_sound=False)
    assert a.global_only() == g and not g.per_sound
    assert "sound_targets" not in g.to_dict() and SpeakerStyle.from_dict(g.to_dict()) == g
    # offsets only on the channels that carry a class, within 2.5 sigma
    offsets = np.abs(np.asarray(a.sound_targets))
    assert np.all(offsets <= 2.5 * SOUND_TARGET_SIGMA + 1e-9) and np.all(offsets[SOUND_TARGET_SIGMA == 0] == 0)
    # renditions vary the per-sound style a little, reproducibly
    r1, r2 = a.jittered(np.random.default_rng(1)), a.jittered(np.random.default_rng(1))
    assert r1 == r2 and r1 != a
    assert np.abs(np.asarray(r1.sound_targets) - np.asarray(a.sound_targets)).max() < 0.1


def test_per_sound_style_moves_its_own_class_in_shape_and_time():
    from lipsync_core.synthetic.articulation import SOUND_CLASSES, frame_sound_classes

    k_round, k_spread = list(SOUND_CLASSES).index("rounded"), list(SOUND_CLASSES).index("spread")
    fps = 100
    phons = timeline(["_", "'u:", "_", "'i:", "_"], 0.2)
    zeros = tuple((0.0,) * len(CHANNELS) for _ in SOUND_CLASSES)
    neutral = SpeakerStyle(sound_targets=zeros, sound_lag_ms=(0.0,) * 6, sound_anticipation=(1.0,) * 6)
    base = articulation_track(phons, 100, fps, neutral)
    assert np.allclose(base, articulation_track(phons, 100, fps), atol=1e-6)  # zero deviations: global style
    more_round = [list(r) for r in zeros]
    more_round[k_round][ROUND] = 0.3
    rounder = articulation_track(phons, 100, fps, SpeakerStyle(
        sound_targets=tuple(map(tuple, more_round)), sound_lag_ms=(0.0,) * 6, sound_anticipation=(1.0,) * 6))
    labels = frame_sound_classes(phons, 100, fps)
    assert (labels[30] == k_round) and (labels[70] == k_spread) and labels[0] == -1
    assert rounder[30, ROUND] > base[30, ROUND] + 0.2  # /u/ rounds more
    assert abs(rounder[70, ROUND] - base[70, ROUND]) < 0.02  # /i/ does not
    lags = [0.0] * 6
    lags[k_spread] = 40.0
    late_i = articulation_track(phons, 100, fps, SpeakerStyle(sound_targets=zeros, sound_lag_ms=tuple(lags),
                                                              sound_anticipation=(1.0,) * 6))
    rise = lambda tr: int(np.argmax(tr[:, SPREAD] > 0.45))  # noqa: E731  the /i/ spread's onset
    assert 3 <= rise(late_i) - rise(base) <= 5  # 40 ms at 100 fps: about 4 frames later
