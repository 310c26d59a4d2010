"""``train-renderer``: stage 2 (the lower-half latent diffusion U-Net) against a frozen AutoencoderKL.

Inputs are built exactly as inference builds them (:mod:`lipsync_core.render.conditioning`):
context = latent of ``mask_lower_half(crop)`` (its upper half is the clean context), motion windows via
``motion_windows`` from the inference-identical mouth params / identity / pose, reference latents of
``reference_images`` frames of the same clip picked by ``choose_reference_frames`` (spread over mouth
openness) among the frames outside the target span. A sample is ``frames`` (5) consecutive frames of
one clip, each with its own noise and timestep (a shared noise made the 5 frames one sample; inference
still shares its initial noise). With ``reference_concat`` each frame also gets the reference whose mouth
opening is nearest its own (``nearest_by_opening``, as inference picks by the driving motion), kept at least
2 frames from the sample. Motion features are normalised by the training data's statistics, stored in the
renderer's config. Timesteps come from a DDPMScheduler built from ``DEFAULT_NOISE_SCHEDULE`` (T' = 1000);
the loss is the epsilon-prediction MSE on the lower half (``renderer_loss``). The exported weights are the EMA's.
Opt-in departures from "as inference builds them", against the closed-mouth shortcut (the renderer drawing the
mouth of its references or of the masked frame instead of the motion's): ``random_copy_reference``,
``context_from_other_frame`` and ``one_sided_references`` (:class:`RendererTrainConfig`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..face import topology
from ..face.template import CROP_SCALE, crop_framing, crop_template
from ..models.io import load_model, save_model
from ..models.renderer import LipRenderUNet, ReferenceFeatures, renderer_loss
from ..render.codec import DiffusersVAECodec
from ..render.conditioning import (
    MOUTH_MAP_CHANNELS,
    choose_reference_frames,
    frames_away_from,
    mask_lower_half,
    motion_windows,
    mouth_image_points,
    mouth_map,
    nearest_by_opening,
    to_crop,
    usable_by_openness,
)
from ..render.sampling import DEFAULT_NOISE_SCHEDULE
from ..types import LipSyncInputError
from .common import HeldOutValidation, PresetConfig, StepHooks, finish, fit, fixed_batch, seeded_accelerator, start_run
from .dataset import CLIPS_DIR, basis_path, load_basis, load_clip, load_dataset
from .vae import load_vae

RENDERER_PRESETS: dict[str, dict] = {
    "full": {
        "model": {"block_out_channels": [128, 256, 512], "layers_per_block": 2,
                  "cross_attention_levels": [False, True, True], "attention_head_dim": 64, "motion_window": 5,
                  "motion_hidden_dim": 128, "motion_code_dim": 256, "norm_groups": 32, "reference_concat": True,
                  "mouth_map_channels": MOUTH_MAP_CHANNELS, "motion_dropout": 0.15},
        "batch_size": 8, "frames": 5, "steps": 200_000, "lr": 1e-4, "warmup": 1000, "ema_decay": 0.9999,
        "checkpoint_every": 5000, "log_every": 100,
    },
    "demo": {
        "model": {"block_out_channels": [48, 96], "layers_per_block": 1, "cross_attention_levels": [False, True],
                  "attention_head_dim": 24, "motion_window": 5, "motion_hidden_dim": 64, "motion_code_dim": 128,
                  "norm_groups": 16, "mid_cross_attention": True, "reference_concat": True,
                  "mouth_map_channels": MOUTH_MAP_CHANNELS, "motion_dropout": 0.15},
        # lr 1e-3 over 3e-4: held-out val loss 0.052 vs 0.067 and PSNR 16.4 vs 15.5 dB after 2500 steps (DECISIONS).
        # 6000 steps: a step costs 0.18-0.33 s on one thread of this project's CPU (by the day's machine), and
        # the recipe has 45 min (session 11's clean run: 36 min in all, docs/RESULTS.md).
        "batch_size": 4, "frames": 5, "steps": 6_000, "lr": 1e-3, "warmup": 100, "ema_decay": 0.995,
        "checkpoint_every": 500, "log_every": 50,
    },
}


@dataclass
class RendererTrainConfig(PresetConfig):
    PRESETS = RENDERER_PRESETS  # class attribute (no annotation): not a field

    model: dict = field(default_factory=lambda: dict(RENDERER_PRESETS["full"]["model"]))
    batch_size: int = 8  # samples (clips) per step and process; each sample is ``frames`` frames
    frames: int = 5
    reference_images: int = 3
    steps: int = 200_000
    lr: float = 1e-4
    warmup: int = 1000
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    latent_scale: float | None = None  # None: 1 / std of the data's latents (recorded in the renderer config)
    latent_shift: float | None = None  # None: 0
    normalise_motion: bool = True  # motion features scaled by the data's statistics (stored in the config)
    shared_noise: bool = False  # True: the 5 frames of a sample share one noise and one timestep (the first way)
    mouth_loss_weight: float = 0.0  # extra loss weight on the mouth's latent positions (0: plain MSE)
    random_copy_reference: float = 0.0  # share of frames whose copy-path reference is any of the k, not the nearest
    # Against the closed-mouth shortcut (issue 15, session 6), both 0 = off: the share of frames whose masked
    # context (the upper half the renderer reads) is another frame's of the clip, so the context cannot tell
    # the mouth's opening; the share of samples whose k references all come from one end of the clip's
    # openness (its widest- or its most-closed third), so references and motion disagree and the motion decides.
    context_from_other_frame: float = 0.0
    one_sided_references: float = 0.0
    val_samples: int = 8  # fixed samples whose loss is logged (a smooth curve for tests and plots)
    log_every: int = 100
    checkpoint_every: int = 5000
    keep_checkpoints: int = 2
    seed: int = 0
    mixed_precision: str | None = None
    cpu: bool = False



# ----------------------------------------------------------------------------- data


@torch.no_grad()
def encode_crops(codec: DiffusersVAECodec, crops: np.ndarray, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 crops [T,S,S,3] -> (latents, latents of the lower-half-masked crops), float16 on the CPU."""
    z, zm = [], []
    for i in range(0, len(crops), batch):
        x = torch.from_numpy(crops[i:i + batch]).float() / 255.0
        z.append(codec.encode(x).half().cpu())
        zm.append(codec.encode(mask_lower_half(x)).half().cpu())
    return torch.cat(z), torch.cat(zm)


@dataclass
class RenderClip:
    latents: torch.Tensor  # [T, C, h, w] float16
    masked: torch.Tensor  # [T, C, h, w]
    motion: np.ndarray  # [T, W, 13 + id + 3]
    usable: np.ndarray
    openness: np.ndarray
    starts: np.ndarray  # valid start frames of a ``frames``-long all-usable run
    mouth_maps: torch.Tensor  # [T, MOUTH_MAP_CHANNELS, h, w] float16: each frame's own mouth, drawn


class RendererSampler:
    def __init__(self, clips: list[RenderClip], frames: int, reference_images: int, shared_noise: bool = False,
                 random_copy_reference: float = 0.0, motion_dropout: float = 0.0,
                 context_from_other_frame: float = 0.0, one_sided_references: float = 0.0) -> None:
        self.clips = [c for c in clips if len(c.starts)]
        if not self.clips:
            raise LipSyncInputError(f"data: no clip has {frames} consecutive usable frames for the renderer.")
        self.frames, self.k, self.shared_noise = frames, reference_images, shared_noise
        self.random_copy_reference, self.motion_dropout = random_copy_reference, motion_dropout
        self.context_from_other_frame, self.one_sided_references = context_from_other_frame, one_sided_references
        w = np.array([len(c.starts) for c in self.clips], np.float64)
        self.p = w / w.sum()

    def __call__(self, rng: np.random.Generator) -> dict:
        c = self.clips[int(rng.choice(len(self.clips), p=self.p))]
        s = int(c.starts[int(rng.integers(len(c.starts)))])
        span = slice(s, s + self.frames)
        allowed = frames_away_from(c.usable, range(s, s + self.frames))
        if self.one_sided_references > 0 and rng.random() < self.one_sided_references:
            refs = one_sided_reference_frames(c.openness, allowed, self.k, rng)
        else:
            refs = choose_reference_frames(c.openness, allowed, self.k)
        refs = np.resize(refs, self.k)  # a short clip may give fewer distinct frames: repeat them
        context = np.arange(s, s + self.frames)
        if self.context_from_other_frame > 0:  # the context must not tell the mouth's opening
            swap = rng.random(self.frames) < self.context_from_other_frame
            context[swap] = rng.choice(np.flatnonzero(allowed), int(swap.sum()))
        aligned = refs[nearest_by_opening(c.openness[refs], c.openness[span])]
        if self.random_copy_reference > 0:  # the reference's mouth must not stand in for the motion's
            swap = rng.random(self.frames) < self.random_copy_reference
            aligned = np.where(swap, refs[rng.integers(0, len(refs), self.frames)], aligned)
        draws = 1 if self.shared_noise else self.frames
        steps = DEFAULT_NOISE_SCHEDULE["num_train_timesteps"]
        noise = rng.standard_normal((draws,) + tuple(c.latents.shape[1:])).astype(np.float32)
        timesteps = rng.integers(0, steps, draws)
        return {
            "latents": c.latents[span].float(), "masked": c.masked[torch.from_numpy(context)].float(),
            "motion": torch.from_numpy(c.motion[span].astype(np.float32)),
            "reference": c.latents[torch.from_numpy(refs)].float(),
            "aligned_reference": c.latents[torch.from_numpy(aligned)].float(),
            "mouth_map": c.mouth_maps[span].float(),
            "noise": torch.from_numpy(noise).expand(self.frames, *noise.shape[1:]).contiguous(),
            "timestep": torch.from_numpy(timesteps).expand(self.frames).contiguous(),
            "drop_motion": torch.from_numpy(rng.random(self.frames) < self.motion_dropout),
        }


def one_sided_reference_frames(openness: np.ndarray, usable: np.ndarray, count: int,
                               rng: np.random.Generator) -> np.ndarray:
    """``count`` usable frames drawn from one end of the clip's mouth openness: its widest-open or its most
    closed third (a coin decides), sorted. Training on such sets teaches the renderer that when every reference
    shows another mouth than the motion asks for, the motion wins (the closed-mouth shortcut test's case)."""
    order = usable_by_openness(openness, usable)
    third = max(len(order) // 3, 1)
    end = order[-third:] if rng.random() < 0.5 else order[:third]
    return np.sort(rng.choice(end, count, replace=len(end) < count))


def mouth_weight(latent_size: int, crop_size: int, extra: float) -> torch.Tensor:
    """[h - h//2, w] loss weights of the latent's lower half: 1 + ``extra`` on the canonical mouth's box
    (outer lips, grown by 0.15 IOD), so the few latent cells that carry the mouth count for more."""
    lower = latent_size - latent_size // 2
    weight = torch.ones(lower, latent_size)
    if extra <= 0:
        return weight
    lips = crop_template(crop_size)[list(topology.LIPS_OUTER)] * latent_size / crop_size
    margin = 0.15 * CROP_SCALE * latent_size
    x0, y0 = np.floor(lips.min(axis=0) - margin).astype(int)
    x1, y1 = np.ceil(lips.max(axis=0) + margin).astype(int)
    top = latent_size // 2
    weight[max(y0 - top, 0):max(y1 - top + 1, 0), max(x0, 0):x1 + 1] += extra
    return weight


class RendererLoss(nn.Module):
    """One diffusion training step as a module (DDP sees the forward)."""

    def __init__(self, model: LipRenderUNet, mouth_loss_weight: float = 0.0) -> None:
        super().__init__()
        from diffusers import DDPMScheduler

        self.model = model
        scheduler = DDPMScheduler(**DEFAULT_NOISE_SCHEDULE)
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.float().clone(), persistent=False)
        cfg = model.config
        weight = mouth_weight(cfg.latent_size, cfg.crop_size, mouth_loss_weight) if mouth_loss_weight > 0 else None
        self.register_buffer("loss_weight", weight, persistent=False)

    def forward(self, batch: dict) -> torch.Tensor:
        z, zm, motion, ref = batch["latents"], batch["masked"], batch["motion"], batch["reference"]
        b, f, c, h, w = z.shape
        split = h // 2
        t = batch["timestep"].long()  # [b, f]: every frame its own timestep and noise
        a = self.alphas_cumprod[t].to(z.dtype)[:, :, None, None, None]
        noise = batch["noise"]
        noisy_lower = a.sqrt() * z[..., split:, :] + (1 - a).sqrt() * noise[..., split:, :]
        sample = torch.cat([zm[..., :split, :], noisy_lower], dim=3).flatten(0, 1)
        eps_true = torch.cat([torch.zeros_like(noise[..., :split, :]), noise[..., split:, :]], dim=3).flatten(0, 1)
        feats = self.model.encode_reference(ref)
        feats = ReferenceFeatures([tok.repeat_interleave(f, dim=0) for tok in feats.tokens], feats.sizes)
        cfg = self.model.config
        masked = zm.flatten(0, 1) if cfg.use_masked_latent else None
        aligned = batch["aligned_reference"].flatten(0, 1) if cfg.reference_concat else None
        drawn = batch["mouth_map"].flatten(0, 1) if cfg.mouth_map_channels else None
        motion = motion.flatten(0, 1)
        if cfg.motion_dropout > 0:  # some frames without motion: what guidance contrasts with
            motion, drawn = self.model.without_motion(motion, drawn, batch["drop_motion"].flatten())
        eps = self.model(sample, t.flatten(), motion, masked_latent=masked, reference_features=feats,
                         reference_latent=aligned, mouth_map=drawn)
        return renderer_loss(eps, eps_true, self.loss_weight)


def build_render_clips(data_dir, mouth, codec, window: int, frames: int, progress: bool = False,
                       limit: int | None = None) -> list[RenderClip]:
    """Every clip's (or the first ``limit`` clips') latents (float16) and conditioning; crops are read one clip
    at a time and dropped once encoded, so memory holds the latents, not the pictures."""
    from tqdm import tqdm

    out = []
    for meta in tqdm(load_dataset(data_dir)[:limit], desc="encode crops", disable=not progress):
        c = load_clip(Path(data_dir) / CLIPS_DIR / f"{meta.key}.npz", with_crops=True)
        a = c.analyse(mouth)
        z, zm = encode_crops(codec, c.crops)
        runs = np.convolve(c.usable.astype(int), np.ones(frames, int), mode="valid") == frames
        maps = torch.zeros((len(z), MOUTH_MAP_CHANNELS) + tuple(z.shape[-2:]), dtype=torch.float16)
        u = np.flatnonzero(c.usable)  # frames without a face are never a target
        points = to_crop(mouth_image_points(mouth, c.landmarks[u], a.params[u], a.neutral), c.crop_transforms[u])
        maps[torch.from_numpy(u)] = torch.from_numpy(mouth_map(points, c.crop_size, z.shape[-1])).half()
        out.append(RenderClip(z, zm, motion_windows(a.params, a.identity, a.rotations, window), c.usable,
                              a.openness, np.flatnonzero(runs), maps))
    return out


def latent_stats(clips: list[RenderClip]) -> tuple[float, float]:
    z = torch.cat([c.latents[:: max(len(c.latents) // 16, 1)].float() for c in clips])
    return float(z.mean()), float(z.std())


def to_model_scale(clips: list[RenderClip], scale: float, shift: float) -> None:
    """The clips' latents (clean and masked) as the renderer sees them, in place: (z - shift) * scale."""
    for c in clips:
        c.latents = ((c.latents.float() - shift) * scale).half()
        c.masked = ((c.masked.float() - shift) * scale).half()


def motion_stats(clips: list[RenderClip]) -> tuple[list[float], list[float]]:
    """Per-feature mean and std of the motion vectors (mouth params, identity, rotation) of the training data."""
    x = np.concatenate([c.motion[:, c.motion.shape[1] // 2] for c in clips]).astype(np.float64)
    return x.mean(axis=0).tolist(), np.maximum(x.std(axis=0), 1e-4).tolist()


def build_renderer(config: RendererTrainConfig, vae, crop_size: int, identity_dim: int, scale: float,
                   shift: float, vae_source: str, motion: tuple[list[float], list[float]] | None = None
                   ) -> LipRenderUNet:
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    if crop_size % factor:
        raise LipSyncInputError(f"crop size {crop_size} is not a multiple of the VAE's downsampling {factor}.")
    vae_spec = {"latent_channels": int(vae.config.latent_channels), "downsample": factor, "source": vae_source}
    return LipRenderUNet(latent_channels=int(vae.config.latent_channels), latent_size=crop_size // factor,
                         crop_size=crop_size, latent_scale=scale, latent_shift=shift, identity_dim=identity_dim,
                         num_train_timesteps=DEFAULT_NOISE_SCHEDULE["num_train_timesteps"], vae_spec=vae_spec,
                         motion_mean=None if motion is None else motion[0],
                         motion_std=None if motion is None else motion[1], crop_framing=crop_framing(),
                         **config.model)


# ----------------------------------------------------------------------------- training


def train_renderer(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: RendererTrainConfig,
    vae_path: str | os.PathLike,
    basis: str | os.PathLike | None = None,
    resume: str | None = None,
    progress: bool = True,
    init: str | os.PathLike | None = None,
    val_data: str | os.PathLike | None = None,
    hooks: StepHooks | None = None,
) -> dict:
    """Train stage 2; writes ``out_dir/renderer.safetensors`` (EMA weights) and a copy of the VAE file.

    ``init``: a renderer.safetensors to start from (fine-tuning): its architecture, latent scale and motion
    statistics are kept. ``val_data``: a prepared folder of held-out clips: ``val_loss`` is their loss (else
    fixed training samples') and the best EMA weights are exported instead of the last.
    """
    from diffusers.training_utils import EMAModel

    out = Path(out_dir)
    accelerator = seeded_accelerator(config)
    mouth = load_basis(basis or basis_path(data_dir))
    vae = load_vae(vae_path, accelerator.device).eval().requires_grad_(False)
    probe = DiffusersVAECodec(vae, 1.0, 0.0)
    base = load_model(init, "renderer").train() if init is not None else None
    window = base.config.motion_window if base is not None else config.model.get("motion_window", 5)

    def encoded(folder) -> list[RenderClip]:
        return build_render_clips(folder, mouth, probe, window, config.frames, progress and accelerator.is_main_process)

    clips = encoded(data_dir)
    mean, std = latent_stats(clips)
    crop_size = int(load_dataset_meta_crop(data_dir))
    if base is not None:
        check_fine_tune(base, vae, crop_size, mouth.identity_dim, str(init))
        scale, shift = float(base.config.latent_scale), float(base.config.latent_shift)
    else:
        scale = float(config.latent_scale) if config.latent_scale is not None else 1.0 / max(std, 1e-6)
        shift = float(config.latent_shift) if config.latent_shift is not None else 0.0
    held_out = encoded(val_data) if val_data is not None else []
    to_model_scale(clips + held_out, scale, shift)
    model = base if base is not None else build_renderer(
        config, vae, crop_size, mouth.identity_dim, scale, shift, str(vae_path),
        motion_stats(clips) if config.normalise_motion else None)
    ema = EMAModel(model.parameters(), decay=config.ema_decay)
    ema.to(accelerator.device)
    sampler = RendererSampler(clips, config.frames, config.reference_images, config.shared_noise,
                              config.random_copy_reference, float(model.config.motion_dropout),
                              config.context_from_other_frame, config.one_sided_references)
    # checkpoints, logs, config: apart per stage (several stages may share out)
    loss = RendererLoss(model, config.mouth_loss_weight)
    folder = out / "renderer_run"
    run = start_run("renderer", accelerator, loss, sampler, config, folder, data_dir,
                    checkpointed=[ema], resume=resume,
                    config_extra={"vae": str(vae_path), "latent_mean": mean, "latent_std": std,
                                  "init": None if init is None else str(init)})
    val_sampler = sampler if not held_out else RendererSampler(
        held_out, config.frames, config.reference_images, config.shared_noise, 0.0,
        float(model.config.motion_dropout))
    val = fixed_batch(val_sampler, config.seed, config.val_samples, accelerator.device)

    def ema_weights_saved(path: Path) -> None:
        trained = accelerator.unwrap_model(run.module).model
        ema.store(trained.parameters())
        ema.copy_to(trained.parameters())
        save_model(trained, path)
        ema.restore(trained.parameters())

    validation = None
    if held_out:
        validation = HeldOutValidation(folder, config.log_every,
                                       lambda: validation_loss(accelerator.unwrap_model(run.module), val, ema),
                                       ema_weights_saved)
        validation.start(run.start)

    def after_step(step: int) -> dict | None:
        module = accelerator.unwrap_model(run.module)
        ema.step(module.model.parameters())
        if validation is not None:
            return validation(step, config.steps)
        if (step + 1) % run.log.every == 0 or step + 1 == config.steps or step == run.start:
            return {"val_loss": validation_loss(module, val, ema)}
        return None

    summary = {**fit(run, lambda batch: (run.module(batch), {}), after_step, progress, hooks),
               "latent_scale": scale, "latent_shift": shift, **(validation.summary() if validation else {})}

    def export(module: RendererLoss) -> None:
        trained = module.model
        if validation is not None:  # the best held-out EMA weights
            trained.load_state_dict(load_model(validation.best_path, "renderer").state_dict())
        else:
            ema.copy_to(trained.parameters())  # training is over: the EMA weights are the model
        save_model(trained.eval(), out / "renderer.safetensors", extra=run.weights_metadata(summary, weights="ema"))
        vae_file = Path(vae_path)
        if vae_file.is_file() and vae_file.suffix == ".safetensors" and (
                vae_file.resolve() != (out / "vae.safetensors").resolve()):
            shutil.copyfile(vae_file, out / "vae.safetensors")

    return finish(run, summary, export)


def check_fine_tune(base: LipRenderUNet, vae, crop_size: int, identity_dim: int, name: str) -> None:
    """A renderer fine-tuned on new footage keeps its latent space, crop size and identity code."""
    cfg = base.config
    channels = int(vae.config.latent_channels)
    if int(cfg.latent_channels) != channels:
        raise LipSyncInputError(f"{name}: the renderer works on {cfg.latent_channels}-channel latents but the VAE "
                                f"makes {channels}; give the VAE it was trained with.")
    if int(cfg.crop_size) != crop_size:
        raise LipSyncInputError(f"{name}: the renderer was trained on {cfg.crop_size} px crops but the footage was "
                                f"prepared at {crop_size} px; prepare it at the renderer's crop size.")
    if int(cfg.identity_dim) != identity_dim:
        raise LipSyncInputError(f"{name}: the renderer reads a {cfg.identity_dim}-dim identity code but the mouth "
                                f"model gives {identity_dim}; use the mouth model of the renderer's folder.")


@torch.no_grad()
def validation_loss(module: RendererLoss, batch: dict, ema=None) -> float:
    """Loss of the (EMA) weights on fixed samples: same noise, same timesteps every time."""
    model = module.model
    was = model.training
    model.eval()
    if ema is not None:
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
    try:
        return float(module(batch))
    finally:
        if ema is not None:
            ema.restore(model.parameters())
        model.train(was)


def load_dataset_meta_crop(data_dir) -> int:
    from .dataset import clip_paths, read_meta

    return int(read_meta(clip_paths(data_dir)[0])["crop_size"])
