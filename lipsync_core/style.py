"""Stage 1's style story in one place: which frames make the reference, what the reference holds, and the
artist's adjustments applied to the predicted motion (style strength, mouth scale, closing on silence).

The paper's audio-aware style reference is n consecutive frames of a clip: their audio features (keys) and
mouth params (values). Style strength scales the reference's pull inside the motion model
(``LipMotionTransformer.predict_clip``); mouth scale and silence closing act on the predicted params here.
"""

from __future__ import annotations

import numpy as np

from .motion import MouthModel
from .types import DEFAULT_REFERENCE_FRAMES, AudioFeatures, FaceAnalysis, LipSyncInputError, StyleReference


def choose_reference_window(usable: np.ndarray, speech: np.ndarray, length: int) -> np.ndarray:
    """The ``length`` consecutive frames with the most usable, voiced frames (the style reference span).

    The paper takes n consecutive reference frames; both reference encoders see them in order.
    Returns the usable frame indices inside the best window (fewer than ``length`` for short clips).
    """
    usable = np.asarray(usable, bool)
    score = (usable & np.asarray(speech, bool)).astype(np.int64) + usable.astype(np.int64)
    t = len(usable)
    if not usable.any():
        raise LipSyncInputError("style reference: no frame has a face; give a reference clip showing the face.")
    if length >= t:
        return np.flatnonzero(usable)
    sums = np.convolve(score, np.ones(length, dtype=np.int64), mode="valid")
    start = int(np.argmax(sums))
    return start + np.flatnonzero(usable[start : start + length])


def assemble_reference(
    analysis: FaceAnalysis, features: AudioFeatures, max_frames: int = DEFAULT_REFERENCE_FRAMES, source: str = ""
) -> StyleReference:
    """The reference from a clip's analysis and its own audio's features: the best window's keys and values."""
    speech = ~features.silence if features.silence is not None else np.ones(len(features), bool)
    n = min(len(features), len(analysis.params))
    idx = choose_reference_window(analysis.track.usable[:n], speech[:n], max_frames)
    return StyleReference(
        audio_features=features.features[idx],
        mouth_params=analysis.params[idx],
        spec=features.spec,
        source=source,
        frame_indices=idx,
        identity=analysis.identity,
    )


def closed_mouth_params(mouth: MouthModel) -> np.ndarray:
    """Mouth params of the person's neutral (closed) mouth: expression 0 -> p = -mean @ C^T."""
    return (-mouth.expr_mean @ mouth.components.T).astype(np.float32)


def adjust_motion(
    params: np.ndarray, mouth: MouthModel, silence: np.ndarray | None, mouth_scale: float = 1.0,
    close_on_silence: bool = False,
) -> np.ndarray:
    """The artist's adjustments of predicted params (T, 13): scale the opening about the closed mouth, and
    close the mouth (smoothly, over 3 frames) where the audio is silent."""
    closed = closed_mouth_params(mouth)
    if mouth_scale != 1.0:
        params = closed + float(mouth_scale) * (params - closed)
    if close_on_silence and silence is not None:
        weight = np.convolve(silence.astype(np.float32), np.ones(3) / 3, mode="same")[:, None]
        params = params + weight * (closed - params)
    return params.astype(np.float32)
