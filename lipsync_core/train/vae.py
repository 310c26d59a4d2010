"""``train-vae``: the demo's own small ``AutoencoderKL`` on the prepared face crops.

Loss = L1 reconstruction + ``grad_weight`` x L1 of the image gradients (a high-frequency term: plain L1
alone gives soft decodes, and no pretrained perceptual net exists here) + a light KL (``kl_weight``), f4
by default (3 encoder levels). The demo VAE has no mid-block attention: with global attention the upper
half's latent of a *masked* crop differs from the clean one everywhere, and decoding it beside a generated
lower half cost 4 dB (the "seam", issue 15). Any other diffusers ``AutoencoderKL`` (e.g. SD's f8) can serve
the renderer instead (``--vae``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from torch import nn

from ..models.io import load_model, save_model
from ..types import LipSyncInputError
from .common import PresetConfig, finish, fit, seeded_accelerator, start_run
from .dataset import load_dataset

VAE_PRESETS: dict[str, dict] = {
    "demo": {
        # ~0.5 GFLOP per 64 px crop forward: the VAE is the demo's most expensive part on a CPU.
        # 8 latent channels: 4 kept too little of the mouth for the tracker to read its opening back
        # (VAE-only re-tracked opening correlation 0.37 vs 0.74 with 8; mouth PSNR 26.6 vs 28.0 dB).
        "model": {"latent_channels": 8, "block_out_channels": [16, 32, 64], "layers_per_block": 1,
                  "norm_num_groups": 8, "mid_block_add_attention": False},
        "batch_size": 8, "steps": 1500, "lr": 1e-3, "warmup": 50, "log_every": 50, "checkpoint_every": 500,
    },
    "full": {
        "model": {"latent_channels": 4, "block_out_channels": [128, 256, 512], "layers_per_block": 2,
                  "norm_num_groups": 32},
        "batch_size": 16, "steps": 100_000, "lr": 2e-4, "warmup": 1000, "log_every": 100, "checkpoint_every": 2000,
    },
}


@dataclass
class VAETrainConfig(PresetConfig):
    PRESETS = VAE_PRESETS  # class attribute (no annotation): not a field

    model: dict = field(default_factory=lambda: dict(VAE_PRESETS["demo"]["model"]))
    batch_size: int = 8
    steps: int = 1500
    lr: float = 1e-3
    warmup: int = 50
    kl_weight: float = 1e-6
    grad_weight: float = 1.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 50
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    mixed_precision: str | None = None
    cpu: bool = False



def build_vae(model_cfg: dict) -> AutoencoderKL:
    levels = len(model_cfg["block_out_channels"])
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=model_cfg["latent_channels"],
        block_out_channels=tuple(model_cfg["block_out_channels"]), layers_per_block=model_cfg["layers_per_block"],
        norm_num_groups=model_cfg["norm_num_groups"], down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        mid_block_add_attention=model_cfg.get("mid_block_add_attention", True),
    )


def load_vae(path: str | os.PathLike, device: str | torch.device = "cpu") -> AutoencoderKL:
    """A diffusers AutoencoderKL from a pack .safetensors (kind 'vae') or a diffusers folder / single file."""
    path = Path(path)
    if path.is_dir():
        if (path / "vae.safetensors").is_file() and not (path / "config.json").is_file():
            return load_model(path / "vae.safetensors", "vae", device)
        sub = path / "vae" if (path / "vae" / "config.json").is_file() else path
        return AutoencoderKL.from_pretrained(str(sub), local_files_only=True).to(device).eval()
    if not path.is_file():
        raise LipSyncInputError(f"--vae {path}: no such file or folder; give a diffusers AutoencoderKL folder or file.")
    try:
        return load_model(path, "vae", device)
    except LipSyncInputError:
        return AutoencoderKL.from_single_file(str(path), local_files_only=True).to(device).eval()


class CropSampler:
    def __init__(self, crops: list[np.ndarray]) -> None:
        self.crops = crops
        self.sizes = np.array([len(c) for c in crops], np.float64)
        self.p = self.sizes / self.sizes.sum()

    def __call__(self, rng: np.random.Generator) -> dict:
        c = self.crops[int(rng.choice(len(self.crops), p=self.p))]
        img = c[int(rng.integers(len(c)))]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        return {"image": np.ascontiguousarray(img).astype(np.float32) / 127.5 - 1.0}


def gradient_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 distance of the horizontal and vertical finite differences of two [B, C, H, W] images."""
    dx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
    dy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
    return 0.5 * (dx.abs().mean() + dy.abs().mean())


class VAELoss(nn.Module):
    def __init__(self, vae: AutoencoderKL, kl_weight: float, grad_weight: float = 0.0) -> None:
        super().__init__()
        self.vae, self.kl_weight, self.grad_weight = vae, kl_weight, grad_weight

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        x = batch["image"].permute(0, 3, 1, 2)
        posterior = self.vae.encode(x).latent_dist
        recon = self.vae.decode(posterior.sample()).sample.float()
        l1 = (recon - x.float()).abs().mean()
        grad = gradient_l1(recon, x.float())
        kl = posterior.kl().mean() / x[0].numel()
        loss = l1 + self.grad_weight * grad + self.kl_weight * kl * x[0].numel()
        return loss, {"l1": l1.detach(), "grad": grad.detach(), "kl": kl.detach()}


def train_vae(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: VAETrainConfig,
              resume: str | None = None, progress: bool = True) -> dict:
    out = Path(out_dir)
    accelerator = seeded_accelerator(config)
    clips = load_dataset(data_dir, with_crops=True)
    crops = [c.crops[c.usable] for c in clips if c.usable.any()]
    # checkpoints, logs, config: apart per stage (several stages may share out)
    loss = VAELoss(build_vae(config.model), config.kl_weight, config.grad_weight)
    run = start_run("vae", accelerator, loss, CropSampler(crops), config, out / "vae_run", data_dir, resume=resume)
    summary = fit(run, run.module, progress=progress)

    def export(module: VAELoss) -> None:
        save_model(module.vae.eval(), out / "vae.safetensors", extra=run.weights_metadata(summary))

    return finish(run, summary, export)
