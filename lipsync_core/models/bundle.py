"""The models of a lip-sync job as one object: stage 1, stage 2, the mouth model and the renderer's VAE."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..face.template import crop_framing
from ..motion import MouthModel
from ..render.codec import DiffusersVAECodec, LatentCodec, check_codec
from ..types import FeatureSpec, LipSyncInputError
from ..weights import check_model_folder
from .io import load_model


@dataclass
class LipSyncModels:
    """The stage-1 and stage-2 models, the mouth model, and the renderer's own VAE (if shipped)."""

    motion: torch.nn.Module
    renderer: torch.nn.Module
    mouth: MouthModel
    vae: torch.nn.Module | None = None

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> LipSyncModels:
        """Load ``motion``, ``renderer``, ``mouth_model`` (and ``vae`` if present) .safetensors from a folder."""
        paths = check_model_folder(folder)
        renderer = load_model(paths["renderer"], "renderer", device)
        check_framing(renderer.config.crop_framing, f"renderer {paths['renderer']}")  # before any tracking
        return cls(
            motion=load_model(paths["motion"], "motion", device),
            renderer=renderer,
            mouth=MouthModel.load(paths["mouth_model"]),
            vae=load_model(paths["vae"], "vae", device) if "vae" in paths else None,
        )

    @property
    def feature_spec(self) -> FeatureSpec:
        spec = self.motion.config.feature_spec
        if not spec:
            raise LipSyncInputError("motion model: its file records no audio feature spec; re-export it.")
        return FeatureSpec.from_dict(spec)

    def codec(self, external: LatentCodec | None = None) -> LatentCodec:
        """The latent codec to render with: the caller's VAE if given, else the renderer's own."""
        cfg = self.renderer.config
        if external is None:
            if self.vae is None:
                raise LipSyncInputError("vae: the renderer ships no VAE; connect the VAE it was trained with.")
            external = DiffusersVAECodec(self.vae, cfg.latent_scale, cfg.latent_shift)
        check_codec(external, cfg.latent_channels)
        return external


# ----------------------------------------------------------------------------- frames


def check_framing(framing, name: str = "renderer") -> None:
    """A renderer renders the crop framing it was trained on; crops of another framing would misplace the face."""
    if framing is None:  # built in code, not loaded: it takes this version's framing
        return
    trained = tuple(framing)
    if not np.allclose(trained, crop_framing()):
        raise LipSyncInputError(
            f"{name}: it was trained on face crops framed {trained} (scale, centre) but this version crops "
            f"{crop_framing()}; use a renderer trained with this version (the shipped demo models are)."
        )
