"""Stage-2 and VAE training on puppet crops: the losses fall, the exports load, the renderer renders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsync_core.models.io import load_model, save_model
from lipsync_core.render.conditioning import MOUTH_MAP_CHANNELS
from lipsync_core.train.basis import fit_basis
from lipsync_core.train.common import read_log
from lipsync_core.train.evaluate import EvalOptions, evaluate
from lipsync_core.train.motion import MotionTrainConfig, train_motion
from lipsync_core.train.prepare import PrepareOptions, prepare
from lipsync_core.train.puppet_data import make_puppet_videos
from lipsync_core.train.renderer import RendererTrainConfig, train_renderer
from lipsync_core.train.vae import VAETrainConfig, build_vae, lip_masks, train_vae
from lipsync_core.types import LipSyncInputError

TINY_RENDERER = {"block_out_channels": [16, 32], "layers_per_block": 1, "cross_attention_levels": [False, True],
                 "attention_head_dim": 16, "motion_window": 5, "motion_hidden_dim": 16, "motion_code_dim": 32,
                 "norm_groups": 8, "mouth_map_channels": MOUTH_MAP_CHANNELS}
TINY_VAE = {"latent_channels": 4, "block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("render_puppet")
    videos = make_puppet_videos(root / "videos", speakers=2, clips=2, seed=5, size=64, sentences_per_clip=1)
    prepare(videos, root / "data", PrepareOptions(crop_size=32, landmarks="truth"), progress=False)
    fit_basis(root / "data")
    return root / "data"


def renderer_config(steps: int) -> RendererTrainConfig:
    return RendererTrainConfig(model=dict(TINY_RENDERER), batch_size=2, frames=5, steps=steps, lr=2e-3, warmup=5,
                               ema_decay=0.8, val_samples=6, log_every=10, checkpoint_every=0, cpu=True,
                               mixed_precision="no")


def test_vae_training_reduces_reconstruction_error(data, tmp_path):
    config = VAETrainConfig(model=dict(TINY_VAE), batch_size=8, steps=40, lr=3e-3, warmup=5, log_every=5,
                            checkpoint_every=0, cpu=True, mixed_precision="no")
    train_vae(data, tmp_path / "vae", config, progress=False)
    log = read_log(tmp_path / "vae" / "vae_run")
    assert log[-1]["l1"] < 0.7 * log[0]["l1"]
    vae = load_model(tmp_path / "vae" / "vae.safetensors", "vae")
    assert vae.config.latent_channels == 4


def test_decoder_fine_tune_keeps_the_latent_space_and_weights_the_lips(data, tmp_path):
    base = dict(model=dict(TINY_VAE), batch_size=8, lr=3e-3, warmup=5, log_every=5, checkpoint_every=0, cpu=True,
                mixed_precision="no")
    train_vae(data, tmp_path / "vae", VAETrainConfig(steps=10, **base), progress=False)
    first = tmp_path / "vae" / "vae.safetensors"
    config = VAETrainConfig(steps=30, init=str(first), train_encoder=False, mouth_weight=10.0, mixed_upper=0.5, **base)
    train_vae(data, tmp_path / "tuned", config, progress=False)
    before, after = load_model(first, "vae"), load_model(tmp_path / "tuned" / "vae.safetensors", "vae")
    old, new = before.state_dict(), after.state_dict()
    for name in old:  # the encoder (so every latent a renderer was trained on) is bit-identical
        same = torch.equal(old[name], new[name])
        assert same == (name.startswith(("encoder.", "quant_conv."))), name
    log = read_log(tmp_path / "tuned" / "vae_run")
    assert "kl" not in log[-1] and log[-1]["l1"] < log[0]["l1"]
    bad = VAETrainConfig(steps=2, init=str(first), **{**base, "model": {**TINY_VAE, "latent_channels": 8}})
    with pytest.raises(LipSyncInputError, match="init"):
        train_vae(data, tmp_path / "bad", bad, progress=False)


def test_lip_masks_fill_the_lips_polygon_and_grow():
    square = np.array([[[10, 10], [20, 10], [20, 20], [10, 20]]], np.float32)
    tight, grown = lip_masks(square, 32, 0.0), lip_masks(square, 32, 0.1)
    assert tight.shape == (1, 32, 32) and tight[0, 15, 15] == pytest.approx(1.0) and tight[0, 2, 2] == 0
    assert 80 < tight.sum() < 130  # about the square's 100 pixels
    assert grown.sum() > 1.5 * tight.sum() and grown[0, 15, 8] > 0.5


@pytest.mark.slow
def test_tiny_renderer_loss_falls_and_exports(data, tmp_path):
    """A tiny renderer against a frozen tiny AutoencoderKL: the EMA weights' loss on fixed samples (same noise,
    same timesteps) falls, and the exported file records the latent scale the training used."""
    torch.manual_seed(0)
    vae_file = save_model(build_vae(TINY_VAE).eval(), tmp_path / "vae.safetensors")
    out = tmp_path / "renderer"
    train_renderer(data, out, renderer_config(80), vae_file, progress=False)
    log = read_log(out / "renderer_run")
    val = [row["val_loss"] for row in log if "val_loss" in row]
    assert val[-1] < 0.8 * val[0], val
    renderer = load_model(out / "renderer.safetensors", "renderer")
    assert renderer.config.crop_size == 32 and renderer.config.latent_size == 16
    assert renderer.config.latent_scale > 0 and (out / "vae.safetensors").is_file()

    # The folder is a model folder for the pipeline once stage 1 is there: eval renders and scores crops.
    motion = MotionTrainConfig(model={"d_model": 32, "num_heads": 4, "decoder_layers": 1, "audio_encoder_layers": 1,
                                      "lip_encoder_layers": 1, "ff_dim": 64}, clip_frames=16, reference_frames=16,
                               batch_size=2, steps=5, warmup=1, checkpoint_every=0, cpu=True, mixed_precision="no")
    train_motion(data, out, motion, progress=False)
    report = evaluate(out, data, EvalOptions(reference_frames=16, render_frames=2, steps=2, padded_silence_s=0.0))
    assert report["render"]["rendered_frames"] == 8
    assert np.isfinite(report["render"]["psnr"]) and -1 <= report["render"]["ssim"] <= 1
    assert "not computed" in report["not_computed"]["SyncScore"] and "| LipLMD" in report["markdown"]


def test_load_vae_from_diffusers_folder_and_pack_file(tmp_path):
    """The renderer trains against any AutoencoderKL: a diffusers folder (or its vae/ subfolder) or a pack file."""
    from lipsync_core.train.vae import load_vae

    vae = build_vae(TINY_VAE).eval()
    vae.save_pretrained(tmp_path / "sd" / "vae")
    save_model(vae, tmp_path / "pack" / "vae.safetensors")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    want = vae.encode(x).latent_dist.mean
    for source in (tmp_path / "sd", tmp_path / "sd" / "vae", tmp_path / "pack", tmp_path / "pack" / "vae.safetensors"):
        got = load_vae(source).encode(x).latent_dist.mean
        torch.testing.assert_close(got, want)


def test_mouth_weight_covers_the_canonical_mouth_in_the_lower_half():
    from lipsync_core.face import topology
    from lipsync_core.face.template import crop_template
    from lipsync_core.train.renderer import mouth_weight

    w = mouth_weight(16, 64, 4.0)
    assert w.shape == (8, 16) and w.min() == 1 and w.max() == 5
    x, y = (crop_template(64)[[topology.UPPER_INNER_LIP, topology.LOWER_INNER_LIP]].mean(axis=0) / 4).astype(int)
    assert w[y - 8, x] == 5  # the mouth's centre cell
    assert w[:, 0].max() == 1 and w[-1].max() == 1  # not the cheeks' edge, not the chin's bottom row
    assert bool((mouth_weight(16, 64, 0.0) == 1).all())


def labelled_clip(length: int = 60):
    """A clip whose every latent holds its frame index, and whose mouth opens steadily: a sample's tensors tell
    which frame each came from."""
    from lipsync_core.train.renderer import RenderClip

    frame = torch.arange(length, dtype=torch.float16)[:, None, None, None].expand(length, 2, 4, 4).contiguous()
    usable = np.ones(length, bool)
    return RenderClip(latents=frame, masked=frame.clone(), motion=np.zeros((length, 5, 4), np.float32),
                      usable=usable, openness=np.linspace(0, 1, length).astype(np.float32),
                      starts=np.arange(length - 4), mouth_maps=torch.zeros(length, 3, 4, 4, dtype=torch.float16))


def test_context_from_other_frame_and_one_sided_references_do_what_they_say():
    """Against the closed-mouth shortcut: the masked context of a share of frames comes from another frame of the
    clip (at least 2 frames from the sample); one-sided reference sets lie all in the widest or the most closed
    third of the clip. Off (0), the context is the frame's own and the references spread over openness."""
    from lipsync_core.render.conditioning import choose_reference_frames, frames_away_from
    from lipsync_core.train.renderer import RendererSampler

    clip = labelled_clip()

    def frames_of(batch, key):
        return batch[key][:, 0, 0, 0].long().numpy()

    plain = RendererSampler([clip], 5, 3)
    swapped = RendererSampler([clip], 5, 3, context_from_other_frame=1.0, one_sided_references=1.0)
    half = RendererSampler([clip], 5, 3, context_from_other_frame=0.5)
    rng = np.random.default_rng(0)
    sides, swaps = set(), []
    for _ in range(40):
        batch = plain(rng)
        own = frames_of(batch, "latents")
        assert (frames_of(batch, "masked") == own).all()
        spread = choose_reference_frames(clip.openness, frames_away_from(clip.usable, own), 3)
        assert (frames_of(batch, "reference") == spread).all()

        batch = swapped(rng)
        own = frames_of(batch, "latents")
        context, refs = frames_of(batch, "masked"), frames_of(batch, "reference")
        assert (np.abs(context[:, None] - own[None, :]).min(axis=1) > 2).all()  # never near the sample
        assert (np.abs(refs[:, None] - own[None, :]).min(axis=1) > 2).all()
        allowed = np.flatnonzero(frames_away_from(clip.usable, own))
        third = len(allowed) // 3
        widest, closed = set(allowed[-third:]), set(allowed[:third])  # openness rises with the frame index
        assert set(refs) <= widest or set(refs) <= closed
        sides.add(set(refs) <= widest)
        assert (frames_of(batch, "latents") == own).all() and len(set(own)) == 5

        batch = half(rng)
        swaps.append(frames_of(batch, "masked") != frames_of(batch, "latents"))
    assert sides == {True, False}  # both ends occur
    assert 0.3 < np.mean(swaps) < 0.7


def test_train_renderer_command_fine_tunes_from_init(data, tmp_path):
    """``train-renderer --init FILE``: the architecture, latent scale and motion statistics are the file's (not the
    preset's), the weights move, and the new options are taken from ``--set``."""
    from lipsync_core.train.cli import main
    from lipsync_core.train.dataset import basis_path, load_basis
    from lipsync_core.train.renderer import build_renderer

    torch.manual_seed(0)
    vae = build_vae(TINY_VAE).eval()
    vae_file = save_model(vae, tmp_path / "vae.safetensors")
    identity = load_basis(basis_path(data)).identity_dim
    base = build_renderer(renderer_config(1), vae, 32, identity, 0.7, 0.0, str(vae_file))
    init = save_model(base, tmp_path / "base" / "renderer.safetensors")
    out = tmp_path / "tuned"
    assert main(["train-renderer", "--data", str(data), "--vae", str(vae_file), "--out", str(out), "--init", str(init),
                 "--steps", "4", "--batch-size", "2", "--cpu", "--mixed-precision", "no", "--quiet",
                 "--set", "context_from_other_frame=0.5", "--set", "one_sided_references=0.5"]) == 0
    tuned = load_model(out / "renderer.safetensors", "renderer")
    assert tuned.config.block_out_channels == base.config.block_out_channels  # the init's, not the demo preset's
    assert tuned.config.latent_scale == 0.7
    before = base.state_dict()
    assert tuned.state_dict().keys() == before.keys()
    assert any(not torch.equal(v, before[k]) for k, v in tuned.state_dict().items())
    saved = json.loads((out / "renderer_run" / "train_config.json").read_text())
    assert saved["context_from_other_frame"] == 0.5 and saved["one_sided_references"] == 0.5
    assert saved["init"] == str(init)
