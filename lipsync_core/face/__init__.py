"""Faces: tracking backends, alignment to canonical crops, masks, paste-back."""

from .align import (
    apply_transform,
    color_match,
    crop_transforms_from_landmarks,
    fit_similarity_2d,
    invert_similarity,
    lower_half_mask,
    mouth_chin_masks,
    paste_back,
    rescale_transforms,
    warp_to_crops,
)
from .backends import FaceCandidate, InsightFaceBackend, MediaPipeBackend, TorchMeshBackend
from .smoothing import OneEuroConfig
from .template import CROP_CENTER, CROP_SCALE, canonical_face, crop_template, interocular
from .tracking import DEFAULT_FACE_BACKEND, FACE_BACKENDS, FACE_CHOICES, GAP_POLICIES, FaceTracker, track_faces

__all__ = [
    "CROP_CENTER",
    "CROP_SCALE",
    "DEFAULT_FACE_BACKEND",
    "FACE_BACKENDS",
    "FACE_CHOICES",
    "GAP_POLICIES",
    "FaceCandidate",
    "FaceTracker",
    "InsightFaceBackend",
    "MediaPipeBackend",
    "OneEuroConfig",
    "TorchMeshBackend",
    "apply_transform",
    "canonical_face",
    "color_match",
    "crop_template",
    "crop_transforms_from_landmarks",
    "fit_similarity_2d",
    "interocular",
    "invert_similarity",
    "mouth_chin_masks",
    "lower_half_mask",
    "paste_back",
    "rescale_transforms",
    "track_faces",
    "warp_to_crops",
]
