"""Face crops <-> renderer latents, through whichever autoencoder the renderer was trained with.

The renderer's config records the latent channels, scale and shift; a codec applies them
so the renderer always sees latents scaled as in training. The ComfyUI nodes wrap a
graph's VAE in the same interface (nodes/), so lipsync_core never imports comfy.
"""

from __future__ import annotations

from typing import Protocol

import torch

from ..types import LipSyncInputError


class LatentCodec(Protocol):
    latent_channels: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, S, S, 3] float 0..1 -> latents [B, C, h, w] scaled for the renderer."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, C, h, w] scaled for the renderer -> images [B, S, S, 3] float 0..1."""


class DiffusersVAECodec:
    """A diffusers AutoencoderKL; encodes with the posterior mean so results are deterministic."""

    def __init__(self, vae: torch.nn.Module, scale: float, shift: float = 0.0) -> None:
        self.vae = vae
        self.scale = float(scale)
        self.shift = float(shift)
        self.latent_channels = int(vae.config.latent_channels)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, self.dtype).permute(0, 3, 1, 2) * 2.0 - 1.0
        mean = self.vae.encode(x).latent_dist.mean
        return ((mean - self.shift) * self.scale).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.to(self.device, self.dtype) / self.scale + self.shift
        x = self.vae.decode(z).sample
        return ((x.float() + 1.0) / 2.0).clamp(0, 1).permute(0, 2, 3, 1)


def codec_identity(codec: LatentCodec) -> tuple:
    """What decides a codec's latents: the autoencoder it wraps (a codec is made afresh per render) and its
    scaling."""
    return (type(codec).__name__, getattr(codec, "vae", codec), getattr(codec, "scale", None),
            getattr(codec, "shift", None))


def check_codec(codec: LatentCodec, latent_channels: int, what: str = "vae") -> None:
    """A VAE whose latent channels differ from the renderer's is refused with the fix."""
    if int(codec.latent_channels) != int(latent_channels):
        raise LipSyncInputError(
            f"{what}: it makes {codec.latent_channels}-channel latents but the renderer was trained on "
            f"{latent_channels}-channel latents; use the renderer's own VAE or one of the same family."
        )
