"""Audio: any ComfyUI AUDIO -> 16 kHz mono, features aligned to video frames."""

from .features import (
    SpeechEncoder,
    compute_features,
    detect_silence,
    features_from_audio_encoder_output,
    frame_centres,
    logmel,
    logmel_spec,
)
from .io import TARGET_RATE, audio_to_mono, duration_frames, load_audio_file, make_audio, resample, scale_samples
from .length import LENGTH_POLICIES, LengthMatch, match_length, ping_pong_indices

__all__ = [
    "LENGTH_POLICIES",
    "TARGET_RATE",
    "LengthMatch",
    "SpeechEncoder",
    "audio_to_mono",
    "compute_features",
    "detect_silence",
    "duration_frames",
    "features_from_audio_encoder_output",
    "frame_centres",
    "load_audio_file",
    "logmel",
    "logmel_spec",
    "make_audio",
    "match_length",
    "ping_pong_indices",
    "resample",
    "scale_samples",
]
