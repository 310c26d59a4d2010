"""Real synthetic speech for tests: libespeak-ng (from espeakng-loader) through ctypes.

A test-only helper (espeak-ng is GPL; the pack never needs it). ``synthesize("text")``
returns (int16 samples, sample rate 22050).
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@functools.lru_cache(maxsize=1)
def _engine():
    import espeakng_loader

    lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate <= 0:
        raise RuntimeError("espeak-ng failed to initialise")
    chunks: list[np.ndarray] = []

    def on_audio(wav, n, _events):
        if wav and n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = _CALLBACK(on_audio)
    lib.espeak_SetSynthCallback(callback)
    return lib, rate, chunks, callback


def synthesize(text: str, voice: str = "en", rate_wpm: int = 160, pitch: int = 50) -> tuple[np.ndarray, int]:
    """Speak ``text``; returns (int16 mono samples, sample rate)."""
    lib, rate, chunks, _ = _engine()
    chunks.clear()
    lib.espeak_SetVoiceByName(voice.encode())
    lib.espeak_SetParameter(1, rate_wpm, 0)  # espeakRATE
    lib.espeak_SetParameter(3, pitch, 0)  # espeakPITCH
    data = text.encode("utf-8") + b"\0"
    lib.espeak_Synth(data, len(data), 0, 0, 0, 0x1000, None, None)  # espeakCHARS_AUTO | espeakENDPAUSE
    lib.espeak_Synchronize()
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)), rate
