"""The pack's own graph types: socket name -> the Python class a value of that socket is.

Sockets of these types connect only StyleLipSync nodes; their values are the contracts of
``lipsync_core.types`` (numpy dataclasses, device-free) or a :class:`HostedModel`. The contract
tests check that every ``STYLELIPSYNC_*`` socket is declared here and that nodes really return
instances of the declared class.
"""

from __future__ import annotations

from ._core import core_module
from .hosted_model import HostedModel
from .lipsync_models import LipSyncModelBundle

_types = core_module("types")

FACE_TRACK = "STYLELIPSYNC_FACE_TRACK"
AUDIO_FEATURES = "STYLELIPSYNC_AUDIO_FEATURES"
STYLE_REFERENCE = "STYLELIPSYNC_STYLE_REFERENCE"
LIP_MOTION = "STYLELIPSYNC_LIP_MOTION"
MOTION_MODEL = "STYLELIPSYNC_MOTION_MODEL"
RENDERER = "STYLELIPSYNC_RENDERER"
MODELS = "STYLELIPSYNC_MODELS"

CUSTOM_TYPES: dict[str, type] = {
    FACE_TRACK: _types.FaceTrack,
    AUDIO_FEATURES: _types.AudioFeatures,
    STYLE_REFERENCE: _types.StyleReference,
    LIP_MOTION: _types.LipMotion,
    MOTION_MODEL: HostedModel,
    RENDERER: HostedModel,
    MODELS: LipSyncModelBundle,
}
