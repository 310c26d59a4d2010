"""The contracts between the parts (DESIGN.md section 4).

The contracts are frozen: a stage returns a new one rather than changing what it was given (their arrays are
not copied, so "frozen" means the fields, not the numbers in them).

Plain dataclasses over numpy arrays: the front end produces them, the models
and the pipeline consume them, the ComfyUI nodes pass them along as custom
types. Arrays are float32 unless stated; frame axes always come first and a
track or feature sequence always has exactly one entry per video frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the mouth model needs scipy; the contracts are read without it
    from .motion import MouthModel

# Number of mouth parameters (the paper's 13 mouth-related 3DMM coefficients).
NUM_MOUTH_PARAMS = 13
# MediaPipe Face Mesh topology (with iris refinement).
NUM_LANDMARKS = 478

# ----------------------------------------------------------------------------- the choices a user has
# Each list lives here once; the CLI, the nodes and the parts that act on a choice all read it.

# What the tracker does with frames where it finds no face (face.tracking): fill in short tracker
# dropouts within one shot, or pass every such frame through untouched.
GAP_POLICIES = ("interpolate", "passthrough")
DEFAULT_MAX_GAP_SECONDS = 0.5  # longest run of face-less frames that may be filled in


def tracker_options(
    gap_policy: str, max_gap_seconds: float, fps: float, device: Any = None, backend: str | None = None
) -> dict[str, Any]:
    """The no-face choices (a policy and the longest gap in seconds) as FaceTracker options at ``fps``, the
    device of the torch face mesh (None: CUDA when present): the job's device, so ``--device cpu`` means it, and
    the landmark backend (None: the default, FACE_BACKENDS[0])."""
    options = {"gap_policy": gap_policy, "max_gap_frames": int(round(float(max_gap_seconds) * fps))}
    if device is not None:
        options["device"] = device
    if backend is not None:
        options["backend"] = backend
    return options


# Which face the tracker follows when there are several ('identity' needs insightface and a reference face).
FACE_CHOICES = ("largest", "leftmost", "rightmost", "center", "identity")
# Face landmark backends (face.backends); the first is the default. "torch": MediaPipe's face mesh ported to
# torch (shipped weights); "mediapipe": the mediapipe package (the torch port when it is not installed: the
# same model, so saved workflows keep working); "insightface": faces by identity, meshed by the torch mesh.
FACE_BACKENDS = ("torch", "mediapipe", "insightface")
# Video vs audio length (audio.length); the first is the default.
LENGTH_POLICIES = ("trim_to_audio", "trim_to_video", "loop", "ping_pong", "pad_silence")
# The samplers render.sampling builds (its SAMPLERS dict is keyed by exactly these); the first is the default.
SAMPLER_NAMES = ("ddim", "dpmpp_2m", "unipc", "euler")
# Arithmetic precision of the networks (models.precision).
PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_REFERENCE_FRAMES = 256  # the style reference's length n (the paper's)
# What ships with the pack: the demo weights (a models folder) and the demo clips.
DEMO_MODELS = Path(__file__).resolve().parent / "assets" / "demo_models"
DEMO_CLIPS = Path(__file__).resolve().parent / "assets" / "demo"
# The files of a models folder, by kind (the kind each file must hold). The VAE is optional.
MODEL_FILES = {
    "motion": "motion.safetensors",
    "renderer": "renderer.safetensors",
    "mouth_model": "mouth_model.safetensors",
    "vae": "vae.safetensors",
}


class LipSyncInputError(ValueError):
    """Bad user input. The message names the input and the fix, in one line."""


@dataclass(frozen=True)
class FeatureSpec:
    """What an audio feature sequence is, so a checkpoint can refuse the wrong one.

    kind: "logmel", "wav2vec2", "hubert" or "comfy_audio_encoder" (+ model name in extra).
    sample_rate: rate of the waveform the features were computed from (Hz).
    hop_length: analysis hop in samples at ``sample_rate``.
    dims: feature dimension D per video frame.
    extra: any further settings that change the numbers (n_mels, window, model id).
    """

    kind: str
    sample_rate: int
    hop_length: int
    dims: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "sample_rate": self.sample_rate,
            "hop_length": self.hop_length,
            "dims": self.dims,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(d["kind"], int(d["sample_rate"]), int(d["hop_length"]), int(d["dims"]), dict(d.get("extra", {})))

    def check_compatible(self, trained_on: FeatureSpec, what: str = "audio features") -> None:
        """Raise LipSyncInputError when features differ from those a model was trained on."""
        if self.to_dict() != trained_on.to_dict():
            raise LipSyncInputError(
                f"{what}: features are {self.to_dict()} but the model was trained on "
                f"{trained_on.to_dict()}; compute the features with the model's feature spec."
            )


@dataclass(frozen=True)
class AudioFeatures:
    """Per-video-frame audio features: one row per frame at ``fps``."""

    features: np.ndarray  # (T_frames, D) float32
    fps: float
    spec: FeatureSpec
    silence: np.ndarray | None = None  # (T_frames,) bool, True where the frame is silent

    def __len__(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class FaceTrack:
    """One face followed through a video (frame count in == frame count out).

    landmarks: (T, 478, 3) in image pixels (x, y, z with z in x's pixel scale).
    detected: (T,) bool, a face was found in that frame by the backend.
    usable: (T,) bool, the frame has landmarks (detected, or interpolated over a short gap);
        frames that are not usable are passed through untouched.
    crop_transforms: (T, 2, 3) similarity transform image pixels -> canonical crop pixels
        for a crop of ``crop_size`` (smoothed over time).
    rotations: (T, 3, 3) head rotation (canonical mean face -> this frame), from Procrustes.
    """

    fps: float
    frame_size: tuple[int, int]  # (H, W)
    landmarks: np.ndarray
    detected: np.ndarray
    usable: np.ndarray
    crop_transforms: np.ndarray
    rotations: np.ndarray
    crop_size: int
    backend: str = "torch"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.landmarks.shape[0])

    @property
    def interpolated(self) -> np.ndarray:
        return self.usable & ~self.detected


@dataclass(frozen=True)
class StyleReference:
    """The paper's style reference: a clip's audio (keys) and lip shapes (values).

    audio_features: (n, D) reference audio features (same spec as the input's).
    mouth_params: (n, 13) reference mouth params, frame-aligned with audio_features.
    """

    audio_features: np.ndarray
    mouth_params: np.ndarray
    spec: FeatureSpec
    source: str = ""
    frame_indices: np.ndarray | None = None  # (n,) frames of the source the rows came from
    identity: np.ndarray | None = None  # (id_dim,) identity code of the reference person

    @property
    def num_frames(self) -> int:
        return int(self.mouth_params.shape[0])


@dataclass(frozen=True)
class LipMotion:
    """Stage-1 output: mouth params per video frame (+ the style attention, if asked)."""

    params: np.ndarray  # (T, 13)
    fps: float
    attention: np.ndarray | None = None  # (T, n) rows sum to 1
    style_strength: float = 1.0

    def __len__(self) -> int:
        return int(self.params.shape[0])


@dataclass(frozen=True)
class FaceAnalysis:
    """What the mouth model reads from a tracked face: per-frame params, pose, the person's identity."""

    track: FaceTrack
    params: np.ndarray  # (T, 13); frames that are not usable hold their nearest usable frame's values
    rotations: np.ndarray  # (T, 3) axis-angle
    identity: np.ndarray  # (id_dim,)
    openness: np.ndarray  # (T,) inner-lip gap, IOD units
    neutral: np.ndarray  # (478, 3) aligned neutral mesh

    @classmethod
    def of(cls, track: FaceTrack, mouth: MouthModel) -> FaceAnalysis:
        from .motion import mouth_opening, rotation_to_vector

        usable_landmarks = track.landmarks[track.usable]
        neutral = mouth.neutral_shape(usable_landmarks)
        aligned = mouth.align(track.landmarks)
        return cls(
            track=track,
            params=mouth.encode(track.landmarks, neutral=neutral),
            rotations=rotation_to_vector(track.rotations),
            identity=mouth.identity(neutral=neutral),
            openness=mouth_opening(aligned),
            neutral=neutral,
        )

    def __len__(self) -> int:
        return len(self.track)
