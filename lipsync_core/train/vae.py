"""``train-vae``: the demo's own small ``AutoencoderKL`` on the prepared face crops.

Loss = L1 reconstruction + a light KL (``kl_weight``), f4 by default (3 encoder levels). Any other
diffusers ``AutoencoderKL`` (e.g. SD's f8) can serve the renderer instead (``--vae``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from torch import nn

from ..models.io import load_model, save_model
from ..types import LipSyncInputError
from .common import (
    LossLog,
    config_dict,
    load_checkpoint,
    lr_lambda,
    make_accelerator,
    make_loader,
    resolve_resume,
    save_checkpoint,
    seed_everything,
)
from .dataset import load_dataset

VAE_PRESETS: dict[str, dict] = {
    "demo": {
        # ~0.5 GFLOP per 64 px crop forward: the VAE is the demo's most expensive part on a CPU.
        "model": {"latent_channels": 4, "block_out_channels": [16, 32, 64], "layers_per_block": 1,
                  "norm_num_groups": 8},
        "batch_size": 8, "steps": 1500, "lr": 1e-3, "warmup": 50, "log_every": 50, "checkpoint_every": 500,
    },
    "full": {
        "model": {"latent_channels": 4, "block_out_channels": [128, 256, 512], "layers_per_block": 2,
                  "norm_num_groups": 32},
        "batch_size": 16, "steps": 100_000, "lr": 2e-4, "warmup": 1000, "log_every": 100, "checkpoint_every": 2000,
    },
}


@dataclass
class VAETrainConfig:
    model: dict = field(default_factory=lambda: dict(VAE_PRESETS["demo"]["model"]))
    batch_size: int = 8
    steps: int = 1500
    lr: float = 1e-3
    warmup: int = 50
    kl_weight: float = 1e-6
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 50
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    seed: int = 0
    mixed_precision: str | None = None
    cpu: bool = False

    @classmethod
    def preset(cls, name: str) -> VAETrainConfig:
        if name not in VAE_PRESETS:
            raise LipSyncInputError(f"--preset {name!r}: use one of {sorted(VAE_PRESETS)}.")
        p = VAE_PRESETS[name]
        return cls(**{**{k: v for k, v in p.items() if k != "model"}, "model": dict(p["model"])})


def build_vae(model_cfg: dict) -> AutoencoderKL:
    levels = len(model_cfg["block_out_channels"])
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=model_cfg["latent_channels"],
        block_out_channels=tuple(model_cfg["block_out_channels"]), layers_per_block=model_cfg["layers_per_block"],
        norm_num_groups=model_cfg["norm_num_groups"], down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
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


class VAELoss(nn.Module):
    def __init__(self, vae: AutoencoderKL, kl_weight: float) -> None:
        super().__init__()
        self.vae, self.kl_weight = vae, kl_weight

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        x = batch["image"].permute(0, 3, 1, 2)
        posterior = self.vae.encode(x).latent_dist
        recon = self.vae.decode(posterior.sample()).sample
        l1 = (recon.float() - x.float()).abs().mean()
        kl = posterior.kl().mean() / x[0].numel()
        return l1 + self.kl_weight * kl * x[0].numel(), {"l1": l1.detach(), "kl": kl.detach()}


def train_vae(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: VAETrainConfig,
              resume: str | None = None, progress: bool = True) -> dict:
    from tqdm import tqdm

    out = Path(out_dir)
    run = out / "vae_run"  # checkpoints, logs, config: apart per stage (several stages may share out)
    accelerator = make_accelerator(config.mixed_precision, config.cpu)
    seed_everything(config.seed + accelerator.process_index)
    clips = load_dataset(data_dir, with_crops=True)
    crops = [c.crops[c.usable] for c in clips if c.usable.any()]
    vae = build_vae(config.model)
    module = VAELoss(vae, config.kl_weight)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config.warmup, config.steps))
    module, optimizer, scheduler = accelerator.prepare(module, optimizer, scheduler)
    start = 0
    ckpt = resolve_resume(run, resume)
    if ckpt is not None:
        start = load_checkpoint(accelerator, ckpt)
    loader = accelerator.prepare(make_loader(CropSampler(crops), config.seed, config.batch_size,
                                             accelerator.num_processes, start, config.steps))
    log = LossLog(run, accelerator.is_main_process, config.log_every, config.steps, "vae")
    cfg = config_dict(config)
    if accelerator.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        (run / "train_config.json").write_text(json.dumps({"stage": "vae", "data": str(data_dir), **cfg}, indent=1))
    t0 = time.perf_counter()
    step = start
    module.train()
    bar = tqdm(total=config.steps, initial=start, desc="train-vae",
               disable=not (progress and accelerator.is_main_process), unit="step")
    for batch in loader:
        with accelerator.autocast():
            loss, parts = module(batch)
        accelerator.backward(loss)
        if config.grad_clip:
            accelerator.clip_grad_norm_(module.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        values = {k: accelerator.reduce(v.float().reshape(1), "mean").item()
                  for k, v in {"loss": loss.detach(), **parts}.items()}
        log.add(step, values, scheduler.get_last_lr()[0])
        step += 1
        bar.update(1)
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.steps:
            save_checkpoint(accelerator, run, step, cfg, config.keep_checkpoints)
    bar.close()
    accelerator.wait_for_everyone()
    summary = {"steps": step, "seconds": round(time.perf_counter() - t0, 1)}
    if accelerator.is_main_process:
        save_checkpoint(accelerator, run, step, cfg, config.keep_checkpoints)
        trained = accelerator.unwrap_model(module).vae.eval()
        save_model(trained, out / "vae.safetensors", extra={"trained_steps": step, "trained_on": str(data_dir),
                                                            "train_config": cfg})
        (run / "train_summary.json").write_text(json.dumps(summary, indent=1))
    accelerator.wait_for_everyone()
    return summary
