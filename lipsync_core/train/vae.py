"""``train-vae``: the demo's own small ``AutoencoderKL`` on the prepared face crops.

Loss = L1 reconstruction + ``grad_weight`` x L1 of the image gradients (a high-frequency term: plain L1
alone gives soft decodes, and no pretrained perceptual net exists here) + a light KL (``kl_weight``), f4
by default (3 encoder levels). ``mouth_weight`` puts extra weight on each crop's lips (the outer-lip
polygon from its landmarks, grown by ``mouth_margin`` of the crop): the few pixels of the dark opening
that carry what a viewer (and the tracker) reads as the mouth's opening.

Decoder fine-tune (``init`` + ``train_encoder=False``): start from a trained VAE and train only its decoder
(``post_quant_conv`` + ``decoder``). The encoder and so the latent space stay exactly as they were, so a
renderer trained on that VAE's latents keeps working with the new decoder, without retraining.
``mixed_upper``: a share of samples is decoded with the upper latent rows of another frame of the clip and
scored on the lower half only, as inference decodes the input frame's upper half beside a generated lower one.
Not used by the demo recipe: with the demo renderer it fails the closed-mouth shortcut test (docs/DECISIONS.md).

The demo VAE has no mid-block attention: with global attention the upper
half's latent of a *masked* crop differs from the clean one everywhere, and decoding it beside a generated
lower half cost 4 dB (the "seam", issue 15). Any other diffusers ``AutoencoderKL`` (e.g. SD's f8) can serve
the renderer instead (``--vae``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from diffusers import AutoencoderKL
from torch import nn

from ..face import topology
from ..models.io import load_model, save_model
from ..render.conditioning import to_crop
from ..types import LipSyncInputError
from .common import HeldOutValidation, PresetConfig, StepHooks, finish, fit, fixed_batch, seeded_accelerator, start_run
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
    mouth_weight: float = 0.0  # extra L1/gradient weight on the lips (0: plain loss)
    mouth_margin: float = 0.03  # the lips' polygon grown by this share of the crop size
    mixed_upper: float = 0.0  # share of samples decoded with another frame's upper latent rows (lower half scored)
    init: str | None = None  # a vae.safetensors to start from (a fine-tune)
    train_encoder: bool = True  # False: only the decoder learns; the latent space stays the init's
    max_frames: int | None = None  # crops held in memory: at most this many, spread evenly (None: all)
    val_samples: int = 32  # held-out crops (only with ``val_data``)
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
    """A diffusers AutoencoderKL from a pack .safetensors (kind 'vae'), a diffusers folder, or one SD-style
    .safetensors file (LDM or diffusers key layout; ``models.sd_vae``)."""
    path = Path(path)
    if path.is_dir():
        if (path / "vae.safetensors").is_file() and not (path / "config.json").is_file():
            return load_model(path / "vae.safetensors", "vae", device)
        sub = path / "vae" if (path / "vae" / "config.json").is_file() else path
        return AutoencoderKL.from_pretrained(str(sub), local_files_only=True).to(device).eval()
    if not path.is_file():
        raise LipSyncInputError(f"--vae {path}: no such file or folder; give a diffusers AutoencoderKL folder or file.")
    from ..weights import KIND_KEY, read_header

    if KIND_KEY in read_header(path):  # the pack's own format (train-vae, the demo models)
        return load_model(path, "vae", device)
    from ..models.sd_vae import load_sd_vae

    return load_sd_vae(path, device)  # an SD-style VAE file, LDM or diffusers layout (ComfyUI's models/vae)


def lip_masks(crop_points: np.ndarray, crop_size: int, margin: float) -> np.ndarray:
    """Outer-lip points in crop pixels (T, 20, 2) -> (T, S, S) float32 masks: the lips' polygon filled
    (opening included), grown by ``margin`` x ``crop_size`` pixels with a soft edge."""
    grow = max(int(round(margin * crop_size)), 0)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    out = np.zeros((len(crop_points), crop_size, crop_size), np.float32)
    for t, pts in enumerate(np.asarray(crop_points, np.float32)):
        mask = np.zeros((crop_size, crop_size), np.uint8)
        cv2.fillPoly(mask, [np.round(pts * 4).astype(np.int32)], 1, lineType=cv2.LINE_AA, shift=2)
        if grow:
            mask = cv2.dilate(mask, kernel)
        out[t] = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0)
    return out


class CropSampler:
    """A random usable crop (frames weighted equally, mirrored half the time), with its lips' mask when
    ``masks`` are given and, with ``other``, a second random frame of the same clip (mirrored alike)."""

    def __init__(self, crops: list[np.ndarray], masks: list[np.ndarray] | None = None, other: bool = False,
                 flip: bool = True) -> None:
        self.crops, self.masks, self.other, self.flip = crops, masks, other, flip
        self.sizes = np.array([len(c) for c in crops], np.float64)
        self.p = self.sizes / self.sizes.sum()

    def __call__(self, rng: np.random.Generator) -> dict:
        i = int(rng.choice(len(self.crops), p=self.p))
        j = int(rng.integers(len(self.crops[i])))
        img = self.crops[i][j]
        mask = self.masks[i][j] if self.masks is not None else None
        other = self.crops[i][int(rng.integers(len(self.crops[i])))] if self.other else None
        if self.flip and rng.random() < 0.5:
            img = img[:, ::-1]
            mask = mask[:, ::-1] if mask is not None else None
            other = other[:, ::-1] if other is not None else None
        sample = {"image": np.ascontiguousarray(img).astype(np.float32) / 127.5 - 1.0}
        if other is not None:
            sample["other"] = np.ascontiguousarray(other).astype(np.float32) / 127.5 - 1.0
        if mask is not None:
            sample["mouth"] = np.ascontiguousarray(mask)
        return sample


def gradient_l1(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """L1 distance of the horizontal and vertical finite differences of two [B, C, H, W] images, each
    difference weighted by ``weight`` [B, 1, H, W] (the mean of its two pixels) when given."""
    dx = ((a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])).abs()
    dy = ((a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])).abs()
    if weight is not None:
        dx = dx * 0.5 * (weight[..., :, 1:] + weight[..., :, :-1])
        dy = dy * 0.5 * (weight[..., 1:, :] + weight[..., :-1, :])
    return 0.5 * (dx.mean() + dy.mean())


class VAELoss(nn.Module):
    def __init__(self, vae: AutoencoderKL, kl_weight: float, grad_weight: float = 0.0, mouth_weight: float = 0.0,
                 train_encoder: bool = True, mixed_upper: float = 0.0) -> None:
        super().__init__()
        self.vae, self.kl_weight, self.grad_weight = vae, kl_weight, grad_weight
        self.mouth_weight, self.train_encoder, self.mixed_upper = mouth_weight, train_encoder, mixed_upper
        if not train_encoder:
            for module in (vae.encoder, vae.quant_conv):
                if module is not None:
                    module.requires_grad_(False)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        x = batch["image"].permute(0, 3, 1, 2)
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            posterior = self.vae.encode(x).latent_dist
        z = posterior.sample()
        weight = None
        if self.mouth_weight > 0 and "mouth" in batch:
            weight = 1.0 + self.mouth_weight * batch["mouth"].float()[:, None]
        if self.mixed_upper > 0 and "other" in batch:
            # As at inference (``with_clean_upper``): the upper latent rows come from another frame of the clip,
            # whose mouth differs; scored on the lower half only, the decoder must draw the mouth from the lower
            # rows instead of reading it from the upper rows' receptive field.
            with torch.no_grad():
                upper = self.vae.encode(batch["other"].permute(0, 3, 1, 2)).latent_dist.mean
            mixed = (torch.rand(len(z), device=z.device) < self.mixed_upper)[:, None, None, None]
            rows = torch.arange(z.shape[-2], device=z.device)[None, None, :, None] < z.shape[-2] // 2
            z = torch.where(mixed & rows, upper.to(z.dtype), z)
            lower = (torch.arange(x.shape[-2], device=x.device) >= x.shape[-2] // 2)[None, None, :, None]
            keep = (~mixed | lower).float()
            weight = keep if weight is None else weight * keep
        recon = self.vae.decode(z).sample.float()
        err = (recon - x.float()).abs()
        l1 = (err if weight is None else err * weight).mean()
        grad = gradient_l1(recon, x.float(), weight)
        parts = {"l1": l1.detach(), "grad": grad.detach()}
        loss = l1 + self.grad_weight * grad
        if self.train_encoder:
            kl = posterior.kl().mean() / x[0].numel()
            loss = loss + self.kl_weight * kl * x[0].numel()
            parts["kl"] = kl.detach()
        return loss, parts


def usable_frames(clips, max_frames: int | None = None) -> list[np.ndarray]:
    """Each clip's usable frame indices, at most ``max_frames`` in all (spread evenly over each clip)."""
    frames = [np.flatnonzero(c.usable) for c in clips]
    total = sum(len(f) for f in frames)
    if max_frames and total > max_frames:
        frames = [f[np.linspace(0, len(f) - 1, max(1, len(f) * max_frames // total)).round().astype(int)]
                  for f in frames]
    return frames


def train_vae(data_dir: str | os.PathLike, out_dir: str | os.PathLike, config: VAETrainConfig,
              resume: str | None = None, progress: bool = True, val_data: str | os.PathLike | None = None,
              hooks: StepHooks | None = None) -> dict:
    """Train the VAE (or fine-tune ``config.init``); ``val_data``: held-out clips whose reconstruction loss
    (posterior mean decoded, as inference does) is logged as ``val_loss``, the best weights exported."""
    out = Path(out_dir)
    accelerator = seeded_accelerator(config)
    clips = load_dataset(data_dir, with_crops=True)
    clips = [c for c in clips if c.usable.any()]
    frames = usable_frames(clips, config.max_frames)
    crops = [c.crops[f] for c, f in zip(clips, frames, strict=True)]
    masks = None
    if config.mouth_weight > 0:
        lips = list(topology.LIPS_OUTER)
        masks = [lip_masks(to_crop(c.landmarks[f][:, lips, :2], c.crop_transforms[f]), c.crop_size,
                           config.mouth_margin) for c, f in zip(clips, frames, strict=True)]
    vae = build_vae(config.model)
    if config.init:
        try:
            vae.load_state_dict(load_vae(config.init).state_dict())
        except RuntimeError as e:
            raise LipSyncInputError(f"init: {config.init} is not a VAE of this preset's model; give one trained "
                                    "with the same model settings (or set the model to match).") from e
    # checkpoints, logs, config: apart per stage (several stages may share out)
    loss = VAELoss(vae, config.kl_weight, config.grad_weight, config.mouth_weight, config.train_encoder,
                   config.mixed_upper)
    params = [p for p in loss.parameters() if p.requires_grad]
    sampler = CropSampler(crops, masks, other=config.mixed_upper > 0)
    folder = out / "vae_run"
    run = start_run("vae", accelerator, loss, sampler, config, folder, data_dir, params=params, resume=resume)
    validation = None
    if val_data is not None:
        held = [c for c in load_dataset(val_data, with_crops=True) if c.usable.any()]
        val_crops = [c.crops[f] for c, f in zip(held, usable_frames(held, config.val_samples), strict=True)]
        batch = fixed_batch(CropSampler(val_crops, flip=False), config.seed, config.val_samples, accelerator.device)
        validation = HeldOutValidation(folder, config.log_every,
                                       lambda: reconstruction_loss(accelerator.unwrap_model(run.module), batch),
                                       lambda path: save_model(accelerator.unwrap_model(run.module).vae, path))
        validation.start(run.start)
    after = None if validation is None else (lambda step: validation(step, config.steps))
    summary = {**fit(run, run.module, after, progress=progress, hooks=hooks),
               **(validation.summary() if validation else {})}

    def export(module: VAELoss) -> None:
        if validation is not None:
            module.vae.load_state_dict(load_model(validation.best_path, "vae").state_dict())
        save_model(module.vae.eval(), out / "vae.safetensors", extra=run.weights_metadata(summary))

    return finish(run, summary, export)


@torch.no_grad()
def reconstruction_loss(module: VAELoss, batch: dict) -> float:
    """L1 + gradient loss of decoding the posterior mean of fixed held-out crops (inference's path)."""
    vae = module.vae
    was = vae.training
    vae.eval()
    try:
        x = batch["image"].permute(0, 3, 1, 2)
        recon = vae.decode(vae.encode(x).latent_dist.mean).sample.float()
        return float((recon - x.float()).abs().mean() + module.grad_weight * gradient_l1(recon, x.float()))
    finally:
        vae.train(was)
