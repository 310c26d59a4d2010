"""The puppet world: a synthetic talking-face dataset with speaking styles (docs/PUPPET_WORLD.md).

Training/dev extra: speech needs ``espeakng-loader`` (GPL), imported only when a clip is spoken.
Names below are loaded lazily, so ``import lipsync_core.synthetic`` costs nothing.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "generate_clip": "clip",
    "make_speakers": "clip",
    "mouth_geometry": "clip",
    "PuppetClip": "clip",
    "Speaker": "clip",
    "SpeakerStyle": "articulation",
    "CHANNELS": "articulation",
    "articulation_track": "articulation",
    "IdentitySpec": "identity",
    "Voice": "tts",
    "Phoneme": "tts",
    "synthesize": "tts",
    "espeak_available": "tts",
    "make_sentences": "sentences",
    "best_lag": "sync_check",
    "lag_correlations": "sync_check",
    "audio_envelope": "sync_check",
    "write_clip": "io",
    "read_truth": "io",
    "read_video": "io",
    "list_clips": "io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
