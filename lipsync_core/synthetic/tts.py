"""Real speech with phoneme timings: libespeak-ng (from the ``espeakng-loader`` wheel) via ctypes.

espeak-ng is GPL-3.0, so it is a training/dev extra only: this module imports the
loader lazily and nothing in the run-time pack imports this module.

The library is driven in AUDIO_OUTPUT_SYNCHRONOUS mode with phoneme events on, so
every phoneme arrives with its position in the audio (ms). The library holds global
state and is not re-entrant: all calls go through one process-wide lock.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

from ..types import LipSyncInputError

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_PARAM_WORDGAP = 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice setting: language + variant, speed (words/min), pitch and pitch range (0-100)."""

    name: str = "en-us"
    variant: str = "m1"
    rate: int = 165
    pitch: int = 50
    pitch_range: int = 50

    @property
    def espeak_name(self) -> str:
        return f"{self.name}+{self.variant}" if self.variant else self.name


@dataclass(frozen=True)
class Phoneme:
    """One phoneme event: espeak mnemonic (e.g. "aI", "p", "_:"), start and end in seconds."""

    symbol: str
    start: float
    end: float


@dataclass
class Speech:
    """Synthesised speech: mono float32 waveform in [-1, 1], its rate and the phoneme timeline."""

    audio: np.ndarray
    sample_rate: int
    phonemes: list[Phoneme]
    text: str

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


class _Engine:
    """Process-wide handle on libespeak-ng (one per process: the library is global state)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise LipSyncInputError(
                "puppet-world speech needs espeakng-loader; install the training extras: "
                "pip install -r requirements-train.txt"
            ) from exc
        self.lib = _private_library(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetVoiceByName.restype = ctypes.c_int
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_SetParameter.restype = ctypes.c_int
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        self.lib.espeak_Synth.restype = ctypes.c_int
        self.lib.espeak_Synchronize.restype = ctypes.c_int
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        data = espeakng_loader.get_data_path().encode()
        rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {rate})")
        self.sample_rate = int(rate)
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str, int]] = []
        self._callback = _SynthCallback(self._on_audio)  # keep a reference: ctypes must not free it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, numsamples, events) -> int:
        if numsamples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                self._events.append((ev.type, ev.id.string.decode("utf-8", "replace"), ev.audio_position))
            elif ev.type == _EVENT_WORD:
                self._events.append((ev.type, "", ev.audio_position))
            i += 1
        return 0

    def _synth_here(self, text: str, voice: Voice, seed: int) -> tuple[np.ndarray, list[tuple[int, str, int]]]:
        """Synthesise in this process (changes the library's hidden state; see ``synth``)."""
        self.lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
        if self.lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != 0:
            raise LipSyncInputError(f"voice {voice.espeak_name!r} is not known to espeak-ng; use e.g. 'en-us+m1'")
        for param, value in ((_PARAM_RATE, voice.rate), (_PARAM_PITCH, voice.pitch),
                             (_PARAM_RANGE, voice.pitch_range), (_PARAM_VOLUME, 100), (_PARAM_WORDGAP, 0)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self._chunks, self._events = [], []
        raw = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(raw, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with code {err}")
        chunks, events = self._chunks, self._events
        self._chunks, self._events = [], []
        return (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)), events

    def _synth_forked(self, text: str, voice: Voice, seed: int) -> tuple[np.ndarray, list[tuple[int, str, int]]]:
        """Synthesise in a forked child, so this process keeps the library in its just-initialised state."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: synthesise, send (status, events json, int16 samples), exit without cleanup
            status, payload, samples = 0, b"", b""
            try:
                audio, events = self._synth_here(text, voice, seed)
                payload, samples = json.dumps(events).encode(), audio.astype("<i2").tobytes()
            except Exception as exc:  # noqa: BLE001 - any failure is reported to the parent
                status, payload = 1, f"{type(exc).__name__}: {exc}".encode()
            try:
                with os.fdopen(write_fd, "wb") as out:
                    out.write(struct.pack("<iQQ", status, len(payload), len(samples)) + payload + samples)
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as inp:
            blob = inp.read()
        os.waitpid(pid, 0)
        status, n_payload, n_samples = struct.unpack_from("<iQQ", blob, 0)
        payload = blob[20:20 + n_payload]
        if status != 0:
            message = payload.decode()
            if message.startswith("LipSyncInputError: "):
                raise LipSyncInputError(message.split(": ", 1)[1])
            raise RuntimeError(f"espeak-ng synthesis failed: {message}")
        audio = np.frombuffer(blob[20 + n_payload:20 + n_payload + n_samples], dtype="<i2")
        return audio, [tuple(e) for e in json.loads(payload)]

    def synth(self, text: str, voice: Voice, seed: int) -> Speech:
        """libespeak-ng keeps hidden state across utterances (pitch-flutter phase, breath filters and echo of
        the previous voice), so the same text would come out slightly different after other text. Each call
        therefore runs in a forked child of the freshly initialised library: same text + voice + seed, same
        samples. Without fork (Windows) it runs here: valid speech, not bit-exact."""
        with self.lock:
            if hasattr(os, "fork"):
                audio, events = self._synth_forked(text, voice, seed)
            else:  # pragma: no cover - non-POSIX
                audio, events = self._synth_here(text, voice, seed)
        audio = audio.astype(np.float32) / 32768.0
        return Speech(audio, self.sample_rate, _timeline(events, len(audio) / self.sample_rate), text)


def _timeline(events: list[tuple[int, str, int]], duration: float) -> list[Phoneme]:
    """Phoneme events (start only) -> contiguous segments; each ends where the next starts."""
    starts = [(sym, pos / 1000.0) for typ, sym, pos in events if typ == _EVENT_PHONEME and sym]
    out = []
    for k, (sym, t0) in enumerate(starts):
        t1 = starts[k + 1][1] if k + 1 < len(starts) else duration
        t0, t1 = min(t0, duration), min(max(t1, t0), duration)
        out.append(Phoneme(sym, t0, t1))
    return out


_ENGINE: _Engine | None = None


def _private_library(path: str) -> ctypes.CDLL:
    """Load our own copy of libespeak-ng, so no other user of espeak in this process shares its state.

    dlopen of the same file returns the same handle: a test helper or another node pack that
    already used espeak would otherwise leave state (voice, parameters, caches) behind and
    change the samples. A copy under another name gets its own globals; it is unlinked at once.
    """
    fd, private = tempfile.mkstemp(prefix="stylelipsync-espeak-", suffix=".so")
    os.close(fd)
    try:
        shutil.copyfile(path, private)
        return ctypes.CDLL(private)
    finally:
        os.unlink(private)


def espeak_available() -> bool:
    """True when the espeak-ng extra can be loaded (tests skip without it)."""
    try:
        import espeakng_loader  # noqa: F401
    except ImportError:
        return False
    return True


def synthesize(text: str, voice: Voice | None = None, seed: int = 0) -> Speech:
    """Speak ``text`` with ``voice``; returns the waveform and its phoneme timeline (same seed, same samples)."""
    global _ENGINE
    if not text.strip():
        raise LipSyncInputError("text is empty; give a sentence to speak")
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE.synth(text, voice or Voice(), seed)
