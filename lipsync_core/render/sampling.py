"""Stage-2 sampling: denoise only the lower half of the face latent.

The paper samples with DDIM (200 steps) from **the same initial noise for every
frame**, keeping the clean upper half of the masked input's latent as context.
Here any of four diffusers schedulers can do it in far fewer steps. Small
functions in the k-diffusion manner: the scheduler is built apart from the
model, the noise apart from the loop, so chunking cannot change a result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..types import LipSyncInputError

# The training noise schedule (latent-diffusion "scaled linear" betas, T' = 1000 as in the
# paper). Training and sampling both build their schedulers from this one dict.
DEFAULT_NOISE_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "prediction_type": "epsilon",
}

SAMPLERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {"clip_sample": False, "set_alpha_to_one": True}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": (UniPCMultistepScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
}


def make_scheduler(sampler: str, noise_schedule: dict[str, Any] | None = None) -> SchedulerMixin:
    """A fresh scheduler for ``sampler`` over the model's training noise schedule.

    "trailing" spacing makes every step count start at t = T'-1 (pure noise), which
    matters at the low step counts used here.
    """
    if sampler not in SAMPLERS:
        raise LipSyncInputError(f"sampler: unknown '{sampler}'; choose one of {sorted(SAMPLERS)}.")
    cls, options = SAMPLERS[sampler]
    config = {**DEFAULT_NOISE_SCHEDULE, **(noise_schedule or {}), **options, "timestep_spacing": "trailing"}
    return cls(**config)


def shared_noise(
    latent_shape: tuple[int, int, int], seed: int, device: torch.device | str = "cpu", dtype=torch.float32
) -> torch.Tensor:
    """One noise tensor [1, C, h_lower, w] drawn from ``seed`` on the CPU, shared by all frames.

    Drawing on the CPU makes the noise identical on every device; sharing it across
    frames (the paper's trick) keeps textures from flickering and makes the result
    independent of how frames are chunked.
    """
    channels, height, width = latent_shape
    generator = torch.Generator("cpu").manual_seed(int(seed))
    lower = height - height // 2
    noise = torch.randn((1, channels, lower, width), generator=generator, dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)


def guided_step_count(num_steps: int, share: float) -> int:
    """How many of ``num_steps`` steps are guided when the first ``share`` of them are."""
    return max(0, min(num_steps, math.ceil(share * num_steps - 1e-9)))


def last_guided_timestep(sampler: str, num_steps: int, share: float) -> float:
    """The smallest timestep that is still guided when the first ``share`` of ``num_steps`` steps (the noisiest,
    where the mouth's shape is decided) are: guidance doubles a step's work, and the late steps only refine
    texture. ``inf`` when no step is guided."""
    count = guided_step_count(num_steps, share)
    if count <= 0:
        return math.inf
    scheduler = make_scheduler(sampler)
    scheduler.set_timesteps(num_steps)
    return float(scheduler.timesteps[min(count, num_steps) - 1])


Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""denoiser(sample [B, C, h, w], timestep [B]) -> predicted noise [B, C, h, w]."""


def sample_lower_half(
    denoiser: Denoiser,
    context_latent: torch.Tensor,
    noise: torch.Tensor,
    scheduler: SchedulerMixin,
    num_steps: int,
    step_callback: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Denoise the lower half of ``context_latent`` [B, C, h, w]; the upper half stays as given.

    ``noise`` is [1 or B, C, h - h//2, w]. The lower half starts as the context's lower
    half diffused to the first timestep (the paper's z_T), so any sampler can start there.
    ``step_callback(i)`` runs after each step (progress, interruption).
    """
    if num_steps < 1:
        raise LipSyncInputError(f"steps: must be at least 1, got {num_steps}.")
    batch, _, height, _ = context_latent.shape
    split = height // 2
    upper = context_latent[:, :, :split]
    scheduler.set_timesteps(num_steps, device=context_latent.device)
    timesteps = scheduler.timesteps
    noise = noise.to(context_latent).expand(batch, -1, -1, -1)
    lower = scheduler.add_noise(context_latent[:, :, split:], noise, timesteps[:1].repeat(batch))
    for i, t in enumerate(timesteps):
        model_lower = scheduler.scale_model_input(lower, t)
        sample = torch.cat([upper, model_lower.to(upper.dtype)], dim=2)
        eps = denoiser(sample, t.expand(batch))
        lower = scheduler.step(eps[:, :, split:].to(lower.dtype), t, lower).prev_sample
        if step_callback is not None:
            step_callback(i)
    return torch.cat([upper, lower.to(upper.dtype)], dim=2)
