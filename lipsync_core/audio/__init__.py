"""Audio: any ComfyUI AUDIO -> 16 kHz mono, features aligned to video frames.

The names below are imported on first use (PEP 562): ``io`` and ``length`` need only numpy,
while ``features`` pulls in torch, which the command line must not wait for
before it has checked its arguments.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SpeechEncoder": "features",
    "compute_features": "features",
    "detect_silence": "features",
    "features_from_audio_encoder_output": "features",
    "frame_centres": "features",
    "logmel": "features",
    "logmel_spec": "features",
    "TARGET_RATE": "io",
    "audio_to_mono": "io",
    "clean_waveform": "io",
    "duration_frames": "io",
    "load_audio_file": "io",
    "make_audio": "io",
    "read_audio_file": "io",
    "resample": "io",
    "scale_samples": "io",
    "LENGTH_POLICIES": "length",
    "LengthMatch": "length",
    "match_length": "length",
    "ping_pong_indices": "length",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
