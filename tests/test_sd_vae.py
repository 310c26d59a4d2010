"""A user's SD-style VAE file, in the LDM layout (ComfyUI's models/vae) and in diffusers' layout, read without any
download; the renderer trained anew in its latent space by `personalize --vae` (issue 16)."""

from __future__ import annotations

import pytest
import torch
from sd_vae_files import save_diffusers, save_ldm, sd_shaped_vae

from lipsync_core.models.sd_vae import load_sd_vae, vae_config
from lipsync_core.train.vae import load_vae
from lipsync_core.types import DEMO_CLIPS, DEMO_MODELS, LipSyncInputError

# SD 1.5's VAE structure (4 levels, 2 blocks each, mid-block attention, 4 latent channels, quant convs) at an
# eighth of its width: the same key names and shape rules, a CPU test's cost.
NARROW = {"block_out_channels": [16, 32, 64, 64], "norm_num_groups": 16}


def _round_trip(vae, x):
    with torch.no_grad():
        return vae.decode(vae.encode(x).latent_dist.mean).sample


@pytest.mark.parametrize("layout", ["ldm", "ldm in a whole checkpoint", "diffusers"])
def test_both_key_layouts_load_to_the_same_model(tmp_path, layout):
    vae = sd_shaped_vae(3, **NARROW)
    path = tmp_path / "vae.safetensors"
    if layout == "diffusers":
        save_diffusers(vae, path)
    else:
        save_ldm(vae, path, "first_stage_model." if "checkpoint" in layout else "")
    loaded = load_vae(path)  # the loader train-renderer and personalize --vae use
    assert list(loaded.config.block_out_channels) == [16, 32, 64, 64] and loaded.config.norm_num_groups == 16
    assert loaded.config.layers_per_block == 2 and loaded.config.latent_channels == 4
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(_round_trip(loaded, x), _round_trip(vae, x))


@pytest.mark.slow
def test_sd_1_5_shape_is_read_from_the_tensors(tmp_path):
    """The full-size SD 1.5 VAE shape (83.7 M parameters), LDM layout."""
    vae = sd_shaped_vae(0)
    loaded = load_sd_vae(save_ldm(vae, tmp_path / "sd15.safetensors"))
    config = vae_config({k: v for k, v in loaded.state_dict().items()})
    assert config["block_out_channels"] == [128, 256, 512, 512] and config["mid_block_add_attention"]
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in vae.parameters())
    for a, b in zip(loaded.state_dict().values(), vae.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_file_that_is_not_a_vae_says_so(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(LipSyncInputError, match="vae: the file holds no AutoencoderKL"):
        load_vae(tmp_path / "x.safetensors")


@pytest.mark.slow
def test_personalize_trains_a_renderer_in_the_users_vae_at_256_px(tmp_path):
    from lipsync_core.models.bundle import LipSyncModels
    from lipsync_core.train.personalize import Footage, PersonalizeOptions, personalize

    torch.set_num_threads(1)
    vae = sd_shaped_vae(1, **NARROW)
    user_vae = save_ldm(vae, tmp_path / "my_sd_vae.safetensors")
    footage = [Footage(n, path=DEMO_CLIPS / f"{n}.mp4") for n in ("video", "reference")]
    options = PersonalizeOptions(jobs=1, landmarks="auto", vae=str(user_vae), crop_size=256, renderer_preset="demo",
                                 stage_steps={"renderer": 3, "motion": 2})
    record = personalize(footage, tmp_path / "models", DEMO_MODELS, options, progress=False)
    assert record["steps"] == {"renderer": 3, "motion": 2} and record["crop_size"] == 256
    models = LipSyncModels.from_folder(tmp_path / "models")
    cfg = models.renderer.config
    assert (cfg.crop_size, cfg.latent_size, cfg.latent_channels) == (256, 32, 4)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(_round_trip(models.vae, x), _round_trip(vae, x))  # the user's VAE, in the pack's format
    crops = torch.rand(2, 256, 256, 3)
    codec = models.codec()
    assert codec.decode(codec.encode(crops)).shape == (2, 256, 256, 3)
