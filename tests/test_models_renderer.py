"""Stage 2: modulated convolutions, the rendering U-Net, its reference path and its loss."""

import math

import pytest
import torch

from lipsync_core.models.precision import autocast_context
from lipsync_core.models.renderer import (
    LipRenderUNet,
    lower_half_mask,
    modulated_conv2d,
    renderer_loss,
)
from lipsync_core.types import LipSyncInputError


def small(**kw):
    torch.manual_seed(0)
    cfg = dict(
        latent_size=16,
        block_out_channels=(16, 32),
        cross_attention_levels=(True, True),
        attention_head_dim=8,
        identity_dim=4,
        motion_window=3,
        motion_hidden_dim=16,
        motion_code_dim=24,
        norm_groups=8,
    )
    cfg.update(kw)
    return LipRenderUNet(**cfg)


def inputs(model, b=2, k=1, size=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    c = model.config.latent_channels
    return dict(
        sample=torch.randn(b, c, size, size, generator=g),
        timestep=torch.randint(0, 1000, (b,), generator=g),
        motion=torch.randn(b, model.config.motion_window, model.motion_dim, generator=g),
        reference_latents=torch.randn(b, k, c, size, size, generator=g),
    )


def slow_modulated_conv(x, weight, styles, bias, eps):
    """The paper's formula, sample by sample, output channel by output channel, in float64."""
    x, weight, styles, bias = x.double(), weight.double(), styles.double(), bias.double()
    outs = []
    for b in range(x.shape[0]):
        w_mod = torch.empty_like(weight)
        for j in range(weight.shape[0]):
            scaled = styles[b][:, None, None] * weight[j]  # phi_i * w_ijk
            w_mod[j] = scaled / math.sqrt(float((scaled**2).sum()) + eps)
        outs.append(torch.nn.functional.conv2d(x[b : b + 1], w_mod, bias, padding=weight.shape[-1] // 2))
    return torch.cat(outs)


@pytest.mark.parametrize("impl", ["grouped", "input_scaling", "auto"])
def test_modulated_conv_equals_the_papers_formula(impl):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 9, 7, generator=g)
    weight = torch.randn(6, 5, 3, 3, generator=g)
    styles = torch.randn(3, 5, generator=g) * 2 + 1  # a different code per sample
    bias = torch.randn(6, generator=g)
    ref = slow_modulated_conv(x, weight, styles, bias, 1e-8)
    out = modulated_conv2d(x, weight, styles, bias, padding=1, eps=1e-8, impl=impl)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    # Samples really are modulated differently.
    same = modulated_conv2d(x[:1].expand(3, -1, -1, -1), weight, styles, bias, impl=impl)
    assert (same[0] - same[1]).abs().max() > 1e-3


def test_gradients_reach_every_parameter():
    model = small().train()
    batch = inputs(model, b=2, k=2)
    eps = model(**batch)
    assert eps.shape == batch["sample"].shape
    renderer_loss(eps, torch.randn_like(eps)).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert no_grad == []


def test_loss_touches_only_the_lower_half():
    pred, true = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    altered = pred.clone()
    altered[..., :4, :] += 10.0
    assert renderer_loss(altered, true).item() == pytest.approx(renderer_loss(pred, true).item())
    expected = ((pred - true)[..., 4:, :] ** 2).mean()
    assert renderer_loss(pred, true).item() == pytest.approx(expected.item(), rel=1e-6)
    mask = lower_half_mask(8, 6)
    assert mask.shape == (1, 1, 8, 6) and mask[..., :4, :].sum() == 0 and mask[..., 4:, :].min() == 1


def test_weighted_loss_keeps_its_scale_and_favours_the_weighted_cells():
    pred, true = torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 8, 8)
    pred[..., 4, 0] = 1.0  # an error in one lower-half cell
    weight = torch.ones(4, 8)
    assert renderer_loss(pred, true, weight).item() == pytest.approx(renderer_loss(pred, true).item())
    weight[0, 0] = 5.0
    assert renderer_loss(pred, true, weight).item() > 4 * renderer_loss(pred, true).item()


def test_reference_features_are_reusable_and_broadcast():
    model = small().eval()
    batch = inputs(model, b=3, k=2)
    with torch.no_grad():
        direct = model(**batch)
        feats = model.encode_reference(batch["reference_latents"])
        assert feats.tokens[0].shape == (3, 2 * 16 * 16, 16) and feats.tokens[1].shape == (3, 2 * 8 * 8, 32)
        reused = model(batch["sample"], batch["timestep"], batch["motion"], reference_features=feats)
        torch.testing.assert_close(reused, direct)
        # One reference set for the whole batch (B=1 features) == the same set repeated per sample.
        one = model.encode_reference(batch["reference_latents"][:1])
        broadcast = model(batch["sample"], batch["timestep"], batch["motion"], reference_features=one)
        repeated = model(
            batch["sample"],
            batch["timestep"],
            batch["motion"],
            reference_latents=batch["reference_latents"][:1].expand(3, -1, -1, -1, -1),
        )
        torch.testing.assert_close(broadcast, repeated, atol=1e-5, rtol=1e-5)
        # k references are a set: their order does not matter (tokens are concatenated).
        swapped = model(
            batch["sample"], batch["timestep"], batch["motion"], reference_latents=batch["reference_latents"].flip(1)
        )
        torch.testing.assert_close(swapped, direct, atol=1e-5, rtol=1e-5)


def test_motion_reference_and_timestep_all_change_the_output():
    model = small().eval()
    batch = inputs(model)
    with torch.no_grad():
        base = model(**batch)
        for key in ("motion", "reference_latents"):
            other = dict(batch, **{key: torch.randn_like(batch[key])})
            assert (model(**other) - base).abs().max() > 1e-4, key
        assert (model(**dict(batch, timestep=torch.tensor(3))) - base).abs().max() > 1e-4
        # Motion modulates each sample separately: changing sample 1's motion leaves sample 0 alone.
        motion = batch["motion"].clone()
        motion[1] += 1.0
        out = model(**dict(batch, motion=motion))
        torch.testing.assert_close(out[0], base[0])
        assert (out[1] - base[1]).abs().max() > 1e-4


def test_grouped_and_input_scaling_unets_agree():
    a = small(modconv_impl="grouped").eval()
    b = small(modconv_impl="input_scaling").eval()
    b.load_state_dict(a.state_dict())
    batch = inputs(a)
    with torch.no_grad():
        torch.testing.assert_close(a(**batch), b(**batch), atol=1e-5, rtol=1e-5)


def test_masked_latent_channel_option():
    model = small(use_masked_latent=True).eval()
    assert model.in_channels == 4 + 4 + 1
    batch = inputs(model)
    with pytest.raises(LipSyncInputError, match="masked_latent"):
        model(**batch)
    with torch.no_grad():
        out = model(**batch, masked_latent=torch.randn_like(batch["sample"]))
    assert out.shape == batch["sample"].shape


def test_reference_concat_copy_path_option():
    model = small(reference_concat=True).eval()
    assert model.in_channels == 4 + 4 + 1
    batch = inputs(model)
    with pytest.raises(LipSyncInputError, match="reference_latent"):
        model(**batch)
    with torch.no_grad():
        a = model(**batch, reference_latent=torch.zeros_like(batch["sample"]))
        b = model(**batch, reference_latent=torch.randn_like(batch["sample"]))
    assert a.shape == batch["sample"].shape and not torch.allclose(a, b)  # the reference is read


def test_motion_is_normalised_by_the_stored_statistics():
    dims = 13 + 4 + 3
    mean, std = [0.5] * dims, [2.0] * dims
    plain, scaled = small().eval(), small(motion_mean=mean, motion_std=std).eval()
    scaled.load_state_dict(plain.state_dict())  # the statistics are config, not weights
    batch = inputs(plain)
    with torch.no_grad():
        expected = plain(**{**batch, "motion": (batch["motion"] - 0.5) / 2.0})
        torch.testing.assert_close(scaled(**batch), expected)
    with pytest.raises(LipSyncInputError, match="motion_std"):
        small(motion_std=[1.0] * 3)


def test_sixteen_channel_latents_and_no_reference():
    model = small(latent_channels=16).eval()
    batch = inputs(model)
    with torch.no_grad():
        out = model(batch["sample"], 10, batch["motion"])  # scalar timestep, no reference
    assert out.shape == (2, 16, 16, 16) and torch.isfinite(out).all()


def test_bf16_autocast_on_cpu_is_close_to_fp32():
    model = small().eval()
    batch = inputs(model)
    with torch.no_grad():
        ref = model(**batch)
        with autocast_context("cpu", "bf16"):
            out = model(**batch)
    assert torch.isfinite(out).all()
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 0.05


def test_paper_scale_config_is_expressible():
    model = LipRenderUNet(
        latent_size=64,
        crop_size=256,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        cross_attention_levels=(False, True, True, True),
        attention_head_dim=64,
        identity_dim=80,
    )
    assert model.motion_dim == 13 + 80 + 3
    assert sum(p.numel() for p in model.parameters()) > 50_000_000


def test_bad_inputs_get_clear_messages():
    model = small()
    batch = inputs(model)
    with pytest.raises(LipSyncInputError, match="motion"):
        model(**dict(batch, motion=batch["motion"][:, :2]))
    with pytest.raises(LipSyncInputError, match="sample"):
        model(**dict(batch, sample=batch["sample"][:, :3]))
    with pytest.raises(LipSyncInputError, match="divisible"):
        model(**dict(batch, sample=torch.randn(2, 4, 18, 18)))
    with pytest.raises(LipSyncInputError, match="reference_latents"):
        model.encode_reference(torch.randn(2, 1, 3, 16, 16))
    with pytest.raises(LipSyncInputError, match="motion_window"):
        LipRenderUNet(motion_window=4)


def test_mouth_map_channels_option():
    model = small(mouth_map_channels=3).eval()
    assert model.in_channels == 4 + 1 + 3
    batch = inputs(model)
    with pytest.raises(LipSyncInputError, match="mouth_map"):
        model(**batch)
    closed = torch.zeros(2, 3, 16, 16)
    opened = closed.clone()
    opened[:, 1, 10:12, 6:10] = 1.0  # an opening drawn in the lower half
    with torch.no_grad():
        a, b = model(**batch, mouth_map=closed), model(**batch, mouth_map=opened)
    assert a.shape == batch["sample"].shape and not torch.allclose(a, b)  # the map is read


def test_guidance_contrasts_the_motion_with_its_absence():
    model = small(mouth_map_channels=3, motion_dropout=0.1).eval()
    batch = inputs(model)
    drawn = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        plain = model(**batch, mouth_map=drawn)
        still, blank = model.without_motion(batch["motion"], drawn)
        uncond = model(**{**batch, "motion": still}, mouth_map=blank)
        torch.testing.assert_close(model.guided(**batch, guidance=1.0, mouth_map=drawn), plain)
        torch.testing.assert_close(model.guided(**batch, guidance=2.5, mouth_map=drawn),
                                   uncond + 2.5 * (plain - uncond), atol=1e-5, rtol=1e-4)
    assert blank.abs().sum() == 0 and torch.allclose(still, model.norm_motion_mean.expand_as(still))
    # only the rows asked for are dropped
    some, partial = model.without_motion(batch["motion"], drawn, torch.tensor([True, False]))
    assert torch.equal(some[1], batch["motion"][1]) and torch.equal(partial[1], drawn[1]) and partial[0].sum() == 0


def test_a_renderer_trained_without_motion_dropout_is_not_guided():
    model = small().eval()
    batch = inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(model.guided(**batch, guidance=3.0), model(**batch))
