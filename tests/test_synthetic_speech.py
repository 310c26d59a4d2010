"""Puppet-world speech: real espeak-ng TTS with phoneme timings, reproducible; the sentence grammar."""

import numpy as np
import pytest

from lipsync_core.synthetic.sentences import make_sentences
from lipsync_core.synthetic.tts import Voice, espeak_available, synthesize
from lipsync_core.types import LipSyncInputError

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeakng-loader (training extra) not installed")


def test_speech_has_audio_and_a_phoneme_timeline_covering_it():
    s = synthesize("Maybe the blue boat moved.", Voice("en-us", "f2", 160, 55))
    assert s.sample_rate == 22050
    assert 0.8 < s.duration < 4.0
    assert 0.1 < np.abs(s.audio).max() <= 1.0
    starts = np.array([p.start for p in s.phonemes])
    assert np.all(np.diff(starts) >= 0)
    assert s.phonemes[-1].end == pytest.approx(s.duration, abs=0.05)
    symbols = [p.symbol.lstrip("',") for p in s.phonemes]
    assert {"m", "b", "u:", "v"} <= set(symbols)  # maybe, blue, boat, moved
    # audio is louder inside the vowels than in the pauses
    def rms(p):
        seg = s.audio[int(p.start * s.sample_rate): int(p.end * s.sample_rate)]
        return float(np.sqrt(np.mean(seg**2))) if len(seg) else 0.0

    vowels = [rms(p) for p in s.phonemes if p.symbol.lstrip("',") in ("u:", "eI", "oU")]
    pauses = [rms(p) for p in s.phonemes if p.symbol.startswith("_") and p.end - p.start > 0.01]
    assert vowels and min(vowels) > 0.02
    assert all(v > 3 * max(pauses, default=0.0) for v in vowels)


def test_same_text_voice_and_seed_give_identical_samples_whatever_came_before():
    text = "Would you choose those shoes?"
    first = synthesize(text, Voice("en-us", "f2"), seed=3).audio
    synthesize("Something else entirely, with another voice.", Voice("en", "m3", 190, 30), seed=9)
    again = synthesize(text, Voice("en-us", "f2"), seed=3).audio
    assert np.array_equal(first, again)


def test_voices_differ_in_timing_and_sound():
    text = "Peter painted the window."
    slow = synthesize(text, Voice("en-us", "m1", rate=140, pitch=30))
    fast = synthesize(text, Voice("en-us", "f3", rate=190, pitch=70))
    assert slow.duration > 1.15 * fast.duration


def test_unknown_voice_is_a_clear_error():
    with pytest.raises(LipSyncInputError, match="voice"):
        synthesize("hello", Voice("xx-nowhere", ""))
    with pytest.raises(LipSyncInputError, match="empty"):
        synthesize("   ")


def test_grammar_is_seeded_and_varied():
    a, b = make_sentences(30, seed=1), make_sentences(30, seed=1)
    assert a == b
    assert len(set(a)) >= 28
    assert make_sentences(5, seed=2) != a[:5]
    assert all(s[0].isupper() and s[-1] in ".?!" for s in a)
