"""Mouth model: Procrustes alignment, pose, PCA mouth params, identity code."""

from .mouth_model import (
    LIP_INDICES,
    MOUTH_INDICES,
    NUM_LIP_VERTICES,
    NUM_MOUTH_VERTICES,
    MouthModel,
    lip_lmd,
    lip_vertices,
    mouth_opening,
)
from .procrustes import Alignment, procrustes_align, rotation_to_vector, similarity_3d, vector_to_rotation

__all__ = [
    "LIP_INDICES",
    "MOUTH_INDICES",
    "NUM_LIP_VERTICES",
    "NUM_MOUTH_VERTICES",
    "Alignment",
    "MouthModel",
    "lip_lmd",
    "lip_vertices",
    "mouth_opening",
    "procrustes_align",
    "rotation_to_vector",
    "similarity_3d",
    "vector_to_rotation",
]
