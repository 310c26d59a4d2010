"""Phonemes -> visemes -> per-frame articulation, with coarticulation and a speaker's style.

Articulation is a small vector per frame (``CHANNELS``); ``rig.MouthRig`` turns it into
mesh landmarks. Coarticulation follows the dominance model of Cohen & Massaro (1993):
every phoneme pulls each channel toward its target with a dominance that is flat over
the phoneme and decays exponentially before it (anticipation) and after it (carry-over);
the value at a time is the dominance-weighted mean of all targets. Bilabials and
labiodentals have high dominance (the lips must close), /h/ and velars low (they borrow
the neighbouring vowel's shape).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from .tts import Phoneme

# jaw: jaw drop; lips_open: lip parting beyond the jaw (negative presses them shut);
# spread: lip corners out (ee) ; round: corners in + protrusion (oo); corner_lift: smile;
# lower_tuck: lower lip up under the upper teeth (f, v); press: lips rolled in (p, b, m).
CHANNELS = ("jaw", "lips_open", "spread", "round", "corner_lift", "lower_tuck", "press")
N_CHANNELS = len(CHANNELS)


def _t(jaw=0.0, lips_open=0.0, spread=0.0, round=0.0, corner_lift=0.0, lower_tuck=0.0, press=0.0):  # noqa: A002
    return np.array([jaw, lips_open, spread, round, corner_lift, lower_tuck, press], np.float32)


# viseme -> (target, dominance strength, anticipation tau s, carry-over tau s)
VISEMES: dict[str, tuple[np.ndarray, float, float, float]] = {
    "rest": (_t(), 1.0, 0.06, 0.05),
    "PBM": (_t(jaw=0.08, lips_open=-0.6, press=1.0), 4.0, 0.025, 0.02),
    "FV": (_t(jaw=0.12, lower_tuck=1.0), 3.0, 0.025, 0.02),
    "TH": (_t(jaw=0.22, lips_open=0.2, spread=0.1), 1.5, 0.04, 0.03),
    "TDN": (_t(jaw=0.18, lips_open=0.12, spread=0.22), 0.6, 0.035, 0.03),
    "SZ": (_t(jaw=0.1, lips_open=0.15, spread=0.35), 1.4, 0.04, 0.03),
    "SH": (_t(jaw=0.15, lips_open=0.2, spread=-0.2, round=0.6), 2.0, 0.05, 0.04),
    "KG": (_t(jaw=0.3, lips_open=0.2), 0.4, 0.035, 0.03),
    "H": (_t(jaw=0.3, lips_open=0.2), 0.15, 0.03, 0.03),
    "R": (_t(jaw=0.15, lips_open=0.12, round=0.5), 1.2, 0.05, 0.04),
    "W": (_t(jaw=0.1, lips_open=0.05, round=1.0, spread=-0.2), 3.0, 0.06, 0.04),
    "Y": (_t(jaw=0.12, lips_open=0.12, spread=0.5), 1.2, 0.04, 0.03),
    "L": (_t(jaw=0.25, lips_open=0.2, spread=0.1), 0.8, 0.035, 0.03),
    "AA": (_t(jaw=0.9, lips_open=0.35, spread=0.1), 1.3, 0.05, 0.04),
    "EH": (_t(jaw=0.55, lips_open=0.25, spread=0.4), 1.3, 0.05, 0.04),
    "IH": (_t(jaw=0.28, lips_open=0.22, spread=0.6), 1.2, 0.05, 0.04),
    "IY": (_t(jaw=0.2, lips_open=0.15, spread=0.9), 1.3, 0.05, 0.04),
    "AO": (_t(jaw=0.6, lips_open=0.25, round=0.7, spread=-0.1), 1.4, 0.05, 0.04),
    "OH": (_t(jaw=0.45, lips_open=0.2, round=0.8, spread=-0.15), 1.4, 0.05, 0.04),
    "UH": (_t(jaw=0.25, lips_open=0.15, round=0.8, spread=-0.2), 1.3, 0.05, 0.04),
    "UW": (_t(jaw=0.2, lips_open=0.1, round=1.0, spread=-0.3), 1.5, 0.06, 0.04),
    "AH": (_t(jaw=0.6, lips_open=0.3), 1.2, 0.05, 0.04),
    "AX": (_t(jaw=0.35, lips_open=0.18), 0.6, 0.04, 0.035),
    "ER": (_t(jaw=0.3, lips_open=0.15, round=0.35), 1.0, 0.05, 0.04),
}

# The mouth-opening curve built from espeak's phoneme events lags the band-passed speech energy by about 15 ms
# (measured at 200 fps over 8 voices, neutral style): targets sit at phoneme centres while vowel energy rises at
# their onsets. Shifting the articulation this much earlier puts the neutral speaker's sync peak at lag 0.
AV_CALIBRATION_S = 0.015

VOWELS = frozenset({"AA", "EH", "IH", "IY", "AO", "OH", "UH", "UW", "AH", "AX", "ER"})

# espeak-ng English phoneme mnemonics (stress marks stripped) -> viseme sequence (diphthongs split).
PHONEME_VISEMES: dict[str, tuple[str, ...]] = {
    "_": ("rest",), "_:": ("rest",), "_!": ("rest",), "_|": ("rest",), ";": (),
    "p": ("PBM",), "b": ("PBM",), "m": ("PBM",),
    "f": ("FV",), "v": ("FV",),
    "T": ("TH",), "D": ("TH",),
    "t": ("TDN",), "d": ("TDN",), "n": ("TDN",), "t#": ("TDN",), "d#": ("TDN",), "n-": ("TDN",),
    "s": ("SZ",), "z": ("SZ",),
    "S": ("SH",), "Z": ("SH",), "tS": ("SH",), "dZ": ("SH",),
    "k": ("KG",), "g": ("KG",), "N": ("KG",), "x": ("KG",), "h": ("H",), "?": ("KG",),
    "r": ("R",), "r-": ("R",), "w": ("W",), "j": ("Y",), "l": ("L",), "l-": ("L",),
    "a": ("AA",), "a#": ("AA",), "aa": ("AA",), "A:": ("AA",), "A@": ("AA", "ER"), "A": ("AA",),
    "aI": ("AA", "IH"), "aU": ("AA", "UH"), "aI@": ("AA", "IH", "AX"), "aU@": ("AA", "UH", "AX"),
    "E": ("EH",), "e": ("EH",), "eI": ("EH", "IH"), "e@": ("EH", "AX"), "E2": ("EH",),
    "I": ("IH",), "I#": ("IH",), "I2": ("IH",), "i": ("IY",), "i:": ("IY",), "i@": ("IY", "AX"),
    "i@3": ("IY", "ER"),
    "0": ("AO",), "O:": ("AO",), "O2": ("AO",), "O@": ("AO", "ER"), "o@": ("OH", "ER"), "O": ("AO",),
    "oU": ("OH", "UW"), "OI": ("AO", "IY"), "o": ("OH",),
    "U": ("UH",), "U@": ("UH", "AX"), "u:": ("UW",), "u": ("UW",),
    "V": ("AH",), "@": ("AX",), "@2": ("AX",), "@-": ("AX",), "@5": ("AX",), "@L": ("AX", "L"),
    "3": ("ER",), "3:": ("ER",),
}


def viseme_sequence(symbol: str) -> tuple[str, ...]:
    """Visemes of one espeak phoneme; unknown symbols fall back by their first letter (a vowel -> AX)."""
    s = symbol.lstrip("',%=")
    if s in PHONEME_VISEMES:
        return PHONEME_VISEMES[s]
    if s[:2] in PHONEME_VISEMES:
        return PHONEME_VISEMES[s[:2]]
    if s[:1] in PHONEME_VISEMES:
        return PHONEME_VISEMES[s[:1]]
    return ("AX",) if s[:1].lower() in "aeiou@3" else ("TDN",)


# Per-sound style: a speaker shapes each group of sounds in their own way (how far they round /u o/, spread /i/,
# press the lips for /p b m/, tuck the lower lip for /f v/, open for /a/), and times it in their own way.
# The groups are the lip-reading viseme classes whose lip shapes talkers are reported to differ in; velars, /h/
# and rest borrow their neighbours' shapes and get no deviation of their own.
SOUND_CLASSES: dict[str, tuple[str, ...]] = {
    "bilabial": ("PBM",),
    "labiodental": ("FV",),
    "rounded": ("W", "UW", "UH", "OH", "AO", "SH", "R", "ER"),
    "spread": ("IY", "IH", "EH", "Y"),
    "open": ("AA", "AH", "AX"),
    "alveolar": ("TDN", "SZ", "TH", "L"),
}
VISEME_CLASS: dict[str, int] = {v: i for i, vs in enumerate(SOUND_CLASSES.values()) for v in vs}
# Standard deviation of each class's target offset per channel (articulation units, added to the viseme
# targets before the global gains). Each class moves the channels that carry it by about half to three quarters
# of what the global gains move them between speakers (e.g. rounded: round +/-0.3 against the global round
# gain's +/-0.4 on a target of 1.0), so per-sound differences are of the order of between-speaker ones.
SOUND_TARGET_SIGMA = np.array([
    # jaw  lips_open spread round corner_lift lower_tuck press
    [0.04, 0.10, 0.15, 0.20, 0.05, 0.00, 0.35],  # bilabial: how hard and how rolled-in the closure, pursed or not
    [0.05, 0.10, 0.15, 0.10, 0.00, 0.35, 0.00],  # labiodental: how far the lower lip tucks under the teeth
    [0.08, 0.08, 0.15, 0.30, 0.00, 0.00, 0.00],  # rounded: how much rounding and protrusion
    [0.08, 0.08, 0.30, 0.00, 0.15, 0.00, 0.00],  # spread: how far the corners pull (and lift)
    [0.20, 0.12, 0.12, 0.10, 0.00, 0.00, 0.00],  # open: how far the jaw drops and the lips part
    [0.06, 0.08, 0.20, 0.10, 0.00, 0.00, 0.00],  # alveolar: lips spread or neutral on t d n s z l
], np.float64)
SOUND_LAG_SIGMA_MS, SOUND_LAG_MAX_MS = 15.0, 40.0  # when: each class early or late against the sound
SOUND_ANTICIPATION_SIGMA = 0.35  # log-normal: how early the lips start towards the class (0.5x..2x)
SOUND_JITTER = 0.02  # per rendition, added to every offset that varies (ms: 3 on the class lags)


@dataclass(frozen=True)
class SpeakerStyle:
    """How one speaker shapes the same sounds. Gains multiply the viseme targets; biases add.

    jaw_gain / lip_gain: how wide the mouth opens; spread_gain / spread_bias: lip width;
    round_gain: rounding and protrusion; corner_lift: resting smile (negative: frown);
    asymmetry: one side moves more, the jaw drifts sideways (-1..1, small);
    lag_ms: mouth motion relative to the sound (positive: lips later);
    smoothing: scales the coarticulation time constants (>1 slurred, <1 crisp).
    Per sound class (``SOUND_CLASSES``, empty tuples: none, the puppets before issue 14):
    sound_targets: an offset per channel added to the class's viseme targets; sound_lag_ms: the class's
    phonemes shifted in time; sound_anticipation: scales how early the lips move towards the class.
    """

    jaw_gain: float = 1.0
    lip_gain: float = 1.0
    spread_gain: float = 1.0
    spread_bias: float = 0.0
    round_gain: float = 1.0
    corner_lift: float = 0.0
    asymmetry: float = 0.0
    lag_ms: float = 0.0
    smoothing: float = 1.0
    sound_targets: tuple[tuple[float, ...], ...] = ()
    sound_lag_ms: tuple[float, ...] = ()
    sound_anticipation: tuple[float, ...] = ()

    @property
    def per_sound(self) -> bool:
        return bool(self.sound_targets)

    def to_dict(self) -> dict:
        out: dict = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                if v:  # per-sound fields only when present: files of global-only puppets keep their bytes
                    out[f.name] = [list(map(float, r)) if isinstance(r, tuple) else float(r) for r in v]
            else:
                out[f.name] = float(v)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> SpeakerStyle:
        def value(v):
            return tuple(tuple(map(float, r)) if isinstance(r, list) else float(r) for r in v) \
                if isinstance(v, list) else float(v)

        return cls(**{k: value(v) for k, v in d.items()})

    def global_only(self) -> SpeakerStyle:
        """The same global parameters without per-sound style."""
        return replace(self, sound_targets=(), sound_lag_ms=(), sound_anticipation=())

    def with_sounds_of(self, other: SpeakerStyle) -> SpeakerStyle:
        """These global parameters with ``other``'s per-sound style."""
        return replace(self, sound_targets=other.sound_targets, sound_lag_ms=other.sound_lag_ms,
                       sound_anticipation=other.sound_anticipation)

    @classmethod
    def sample(cls, rng: np.random.Generator, per_sound: bool = True) -> SpeakerStyle:
        """A random style: the seeded distribution that training and held-out speakers are drawn from.

        The per-sound deviations are drawn after the global parameters, so a speaker's global parameters are
        the same with or without them.
        """

        def gain(sigma: float, lo: float, hi: float) -> float:
            return float(np.clip(np.exp(rng.normal(0.0, sigma)), lo, hi))

        style = cls(
            jaw_gain=gain(0.4, 0.45, 2.2),
            lip_gain=gain(0.45, 0.35, 2.5),
            spread_gain=gain(0.4, 0.4, 2.2),
            spread_bias=float(np.clip(rng.normal(0.0, 0.3), -0.6, 0.6)),
            round_gain=gain(0.4, 0.4, 2.2),
            corner_lift=float(np.clip(rng.normal(0.05, 0.35), -0.6, 0.8)),
            asymmetry=float(np.clip(rng.normal(0.0, 0.25), -0.5, 0.5)),
            lag_ms=float(np.clip(rng.normal(0.0, 10.0), -25.0, 25.0)),
            smoothing=gain(0.3, 0.55, 1.8),
        )
        if not per_sound:
            return style
        offsets = np.clip(rng.normal(0.0, 1.0, SOUND_TARGET_SIGMA.shape), -2.5, 2.5) * SOUND_TARGET_SIGMA
        lags = np.clip(rng.normal(0.0, SOUND_LAG_SIGMA_MS, len(SOUND_CLASSES)), -SOUND_LAG_MAX_MS, SOUND_LAG_MAX_MS)
        anticipation = np.clip(np.exp(rng.normal(0.0, SOUND_ANTICIPATION_SIGMA, len(SOUND_CLASSES))), 0.5, 2.0)
        return replace(style, sound_targets=tuple(tuple(float(x) for x in row) for row in offsets),
                       sound_lag_ms=tuple(float(x) for x in lags),
                       sound_anticipation=tuple(float(x) for x in anticipation))

    def jittered(self, rng: np.random.Generator, amount: float = 0.04) -> SpeakerStyle:
        """The same style with the small variation of one rendition to the next (nobody repeats exactly)."""
        j = lambda: float(np.exp(rng.normal(0.0, amount)))  # noqa: E731
        out = replace(self, jaw_gain=self.jaw_gain * j(), lip_gain=self.lip_gain * j(),
                      spread_gain=self.spread_gain * j(), round_gain=self.round_gain * j(),
                      lag_ms=self.lag_ms + float(rng.normal(0.0, 3.0)), smoothing=self.smoothing * j())
        if not self.per_sound:
            return out
        targets = np.asarray(self.sound_targets) + rng.normal(0.0, SOUND_JITTER, SOUND_TARGET_SIGMA.shape) * (
            SOUND_TARGET_SIGMA > 0)
        lags = np.asarray(self.sound_lag_ms) + rng.normal(0.0, 3.0, len(SOUND_CLASSES))
        return replace(out, sound_targets=tuple(tuple(float(x) for x in row) for row in targets),
                       sound_lag_ms=tuple(float(x) for x in lags))


def viseme_spans(phonemes: Sequence[Phoneme]) -> list[tuple[str, float, float]]:
    """(viseme, start s, end s) of every viseme in the timeline (diphthongs split evenly), in order."""
    out = []
    for ph in phonemes:
        visemes = viseme_sequence(ph.symbol)
        dur = max(ph.end - ph.start, 1e-3) / max(len(visemes), 1)
        out += [(name, ph.start + i * dur, ph.start + (i + 1) * dur) for i, name in enumerate(visemes)]
    return out


def frame_sound_classes(phonemes: Sequence[Phoneme], n_frames: int, fps: float) -> np.ndarray:
    """(n_frames,) the sound class (index into ``SOUND_CLASSES``) heard at each frame's time; -1 for none."""
    out = np.full(max(n_frames, 0), -1, np.int64)
    t = np.arange(max(n_frames, 0)) / fps
    for name, start, end in viseme_spans(phonemes):
        if name in VISEME_CLASS:
            out[(t >= start) & (t < end)] = VISEME_CLASS[name]
    return out


def articulation_track(
    phonemes: Sequence[Phoneme], n_frames: int, fps: float, style: SpeakerStyle | None = None
) -> np.ndarray:
    """Per-frame articulation (n_frames, N_CHANNELS) float32; frame k shows the mouth at time k / fps.

    Stressed vowels open more; the style scales and biases channels, and shifts time by its lag; a per-sound
    style first moves each sound class's targets, timing and anticipation.
    """
    style = style or SpeakerStyle()
    targets, strengths, centres, half, tau_a, tau_c = [], [], [], [], [], []
    for ph in phonemes:
        visemes = viseme_sequence(ph.symbol)
        if not visemes:
            continue
        stress = 1.15 if ph.symbol.startswith("'") else (1.0 if ph.symbol.startswith(",") else 0.85)
        dur = max(ph.end - ph.start, 1e-3) / len(visemes)
        for i, name in enumerate(visemes):
            target, strength, ta, tc = VISEMES[name]
            target = target.copy()
            shift = 0.0
            if style.per_sound and name in VISEME_CLASS:
                k = VISEME_CLASS[name]
                target += np.asarray(style.sound_targets[k], np.float32)
                shift = style.sound_lag_ms[k] / 1000.0
                ta = ta * style.sound_anticipation[k]
            if name in VOWELS:
                target[:2] *= stress
            targets.append(target)
            strengths.append(strength)
            centres.append(ph.start + (i + 0.5) * dur + shift)
            half.append(0.5 * dur)
            tau_a.append(ta)
            tau_c.append(tc)
    if not targets or n_frames <= 0:
        return np.zeros((max(n_frames, 0), N_CHANNELS), np.float32)
    # pad with rest at both ends so the mouth closes before the first and after the last sound
    t_end = max(phonemes[-1].end, n_frames / fps)
    targets = [VISEMES["rest"][0]] + targets + [VISEMES["rest"][0]]
    strengths = [1.0] + strengths + [1.0]
    centres = [-0.5] + centres + [t_end + 0.5]
    half = [0.45] + half + [0.45]
    tau_a, tau_c = [0.05] + tau_a + [0.05], [0.05] + tau_c + [0.05]

    tgt = np.stack(targets).astype(np.float64)  # (P, C)
    c, h = np.asarray(centres)[None], np.asarray(half)[None]
    ta, tc = np.asarray(tau_a)[None] * style.smoothing, np.asarray(tau_c)[None] * style.smoothing
    t = (np.arange(n_frames) / fps + AV_CALIBRATION_S - style.lag_ms / 1000.0)[:, None]  # lips later by lag
    before = np.maximum(c - h - t, 0.0)  # distance to the phoneme's span, 0 inside it
    after = np.maximum(t - c - h, 0.0)
    dom = np.asarray(strengths)[None] * np.exp(-before / ta - after / tc)  # (T, P)
    dom = np.maximum(dom, 1e-12)
    track = (dom @ tgt) / dom.sum(axis=1, keepdims=True)
    return apply_style(track, style)


def apply_style(track: np.ndarray, style: SpeakerStyle) -> np.ndarray:
    """Scale and bias the channels of a neutral articulation track by a speaker's style."""
    out = np.array(track, np.float64, copy=True)
    out[:, 0] *= style.jaw_gain
    out[:, 1] = np.where(out[:, 1] > 0, out[:, 1] * style.lip_gain, out[:, 1])
    out[:, 2] = out[:, 2] * style.spread_gain + style.spread_bias
    out[:, 3] *= style.round_gain
    out[:, 4] += style.corner_lift
    return out.astype(np.float32)
