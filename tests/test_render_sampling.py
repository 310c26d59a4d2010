"""Lower-half sampling: every sampler reaches the data an exact denoiser implies."""

from __future__ import annotations

import pytest
import torch

from lipsync_core.render.sampling import (
    DEFAULT_NOISE_SCHEDULE,
    SAMPLERS,
    make_scheduler,
    sample_lower_half,
    shared_noise,
)
from lipsync_core.types import LipSyncInputError


def exact_denoiser(target_lower: torch.Tensor, alphas_cumprod: torch.Tensor):
    """The true noise of x_t = sqrt(a) x0 + sqrt(1-a) eps when the data is the point mass x0."""

    def denoise(sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        split = sample.shape[2] // 2
        a = alphas_cumprod[t.long()].view(-1, 1, 1, 1).to(sample)
        eps = (sample[:, :, split:] - a.sqrt() * target_lower) / (1 - a).sqrt()
        return torch.cat([torch.zeros_like(sample[:, :, :split]), eps], dim=2)

    return denoise


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_each_sampler_reaches_the_data_and_keeps_the_upper_half(sampler):
    torch.manual_seed(0)
    context = torch.randn(3, 4, 8, 8)
    target_lower = torch.randn(3, 4, 4, 8) * 0.5
    scheduler = make_scheduler(sampler)
    alphas = make_scheduler("ddim").alphas_cumprod
    noise = shared_noise((4, 8, 8), seed=1)
    out = sample_lower_half(exact_denoiser(target_lower, alphas), context, noise, scheduler, num_steps=12)
    assert torch.equal(out[:, :, :4], context[:, :, :4])
    err = (out[:, :, 4:] - target_lower).abs().max().item()
    assert err < 0.05, f"{sampler}: max error {err}"


def test_schedules_start_from_pure_noise():
    for sampler in SAMPLERS:
        scheduler = make_scheduler(sampler)
        scheduler.set_timesteps(10)
        assert int(scheduler.timesteps[0]) == DEFAULT_NOISE_SCHEDULE["num_train_timesteps"] - 1


def test_shared_noise_is_seeded_and_identical_for_all_frames():
    a, b = shared_noise((4, 9, 8), 7), shared_noise((4, 9, 8), 7)
    assert a.shape == (1, 4, 5, 8) and torch.equal(a, b)
    assert not torch.equal(a, shared_noise((4, 9, 8), 8))


def test_chunking_does_not_change_the_result():
    torch.manual_seed(0)
    context = torch.randn(6, 4, 8, 8)
    target = torch.randn(6, 4, 4, 8)
    alphas = make_scheduler("ddim").alphas_cumprod
    noise = shared_noise((4, 8, 8), seed=3)
    whole = sample_lower_half(exact_denoiser(target, alphas), context, noise, make_scheduler("dpmpp_2m"), 8)
    parts = [
        sample_lower_half(exact_denoiser(target[i : i + 4], alphas), context[i : i + 4], noise,
                          make_scheduler("dpmpp_2m"), 8)
        for i in (0, 4)
    ]
    assert torch.allclose(whole, torch.cat(parts), atol=1e-6)


def test_bad_arguments_get_clear_messages():
    with pytest.raises(LipSyncInputError, match="sampler"):
        make_scheduler("heun++")
    with pytest.raises(LipSyncInputError, match="steps"):
        sample_lower_half(lambda s, t: s, torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 4, 8), make_scheduler("ddim"), 0)


def test_reference_candidates_keep_away_from_the_targets():
    import numpy as np

    from lipsync_core.render.conditioning import choose_reference_frames, frames_away_from

    usable = np.ones(20, bool)
    usable[15] = False
    allowed = frames_away_from(usable, range(5, 10))  # targets 5..9, margin 2: frames 3..11 excluded
    assert np.flatnonzero(allowed).tolist() == [0, 1, 2, 12, 13, 14, 16, 17, 18, 19]
    assert frames_away_from(usable, [0, 19], margin=0).tolist() == [False, *usable[1:19].tolist(), False]
    assert frames_away_from(usable, range(20)).tolist() == usable.tolist()  # nothing left: all usable frames
    refs = choose_reference_frames(np.linspace(0, 1, 20), frames_away_from(usable, [10]), 3)
    assert not set(refs.tolist()) & {8, 9, 10, 11, 12, 15}


def test_decoded_latent_takes_the_clean_upper_half():
    from lipsync_core.render.conditioning import with_clean_upper

    generated, clean = torch.zeros(2, 8, 16, 16), torch.ones(2, 8, 16, 16)
    out = with_clean_upper(generated, clean)
    assert out.shape == generated.shape
    assert bool((out[..., :8, :] == 1).all()) and bool((out[..., 8:, :] == 0).all())


def test_nearest_reference_by_opening():
    from lipsync_core.render.conditioning import nearest_by_opening

    assert nearest_by_opening([0.0, 0.3, 0.1], [0.29, 0.0, 0.12, 0.2]).tolist() == [1, 0, 2, 1]


def test_guided_steps_are_the_noisiest_first():
    import math

    from lipsync_core.render.sampling import last_guided_timestep

    scheduler = make_scheduler("ddim")
    scheduler.set_timesteps(10)
    steps = [float(t) for t in scheduler.timesteps]  # 999 ... 99
    assert last_guided_timestep("ddim", 10, 0.5) == steps[4]
    assert last_guided_timestep("ddim", 10, 1.0) == steps[-1]
    assert last_guided_timestep("ddim", 10, 0.0) == math.inf
    three = make_scheduler("ddim")
    three.set_timesteps(3)
    assert last_guided_timestep("ddim", 3, 0.5) == float(three.timesteps[1])  # 1.5 steps round up to 2
    guided = [t for t in steps if t >= last_guided_timestep("ddim", 10, 0.3)]
    assert len(guided) == 3 and guided == steps[:3]


def test_guided_steps_setting_is_a_share():
    from lipsync_core.render.settings import RenderSettings

    assert RenderSettings(guided_steps=0.0).guided_steps == 0.0
    with pytest.raises(LipSyncInputError, match="guided_steps"):
        RenderSettings(guided_steps=1.5)
