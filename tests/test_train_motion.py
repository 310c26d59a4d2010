"""Stage-1 training on puppet data: prepare -> fit-basis -> train-motion -> eval, resume, skipped files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsync_core.models.io import load_model
from lipsync_core.motion import lip_lmd
from lipsync_core.train.basis import fit_basis
from lipsync_core.train.common import read_log
from lipsync_core.train.dataset import clip_paths, load_basis, load_dataset, merge_prepared
from lipsync_core.train.evaluate import EvalOptions, motion_metrics
from lipsync_core.train.motion import MotionSampler, MotionTrainConfig, motion_clips, train_motion
from lipsync_core.train.prepare import PrepareOptions, prepare
from lipsync_core.train.puppet_data import make_puppet_videos
from lipsync_core.types import LipSyncInputError

TINY_MODEL = {"d_model": 32, "num_heads": 4, "decoder_layers": 1, "audio_encoder_layers": 1, "lip_encoder_layers": 1,
              "ff_dim": 64, "window": 5, "dropout": 0.0, "reference_dropout": 0.2, "vertex_loss_weight": 300.0}


def tiny_config(steps: int, **kw) -> MotionTrainConfig:
    base = {"model": dict(TINY_MODEL), "clip_frames": 24, "reference_frames": 32, "batch_size": 4, "steps": steps,
            "lr": 2e-3, "warmup": 20, "log_every": 25, "checkpoint_every": 0, "cpu": True, "mixed_precision": "no"}
    base.update(kw)
    return MotionTrainConfig(**base)


@pytest.fixture(scope="module")
def puppet(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("puppet")
    # global styles only: with per-sound style (issue 14) this tiny model's held-out LipLMD stays at 0.95x the
    # audio-free baseline at 400 and at 800 steps (0.78x without it): unseen per-sound styles need a reference
    # a 32-frame, d = 32 model cannot use; the ablation measures that world (docs/RESULTS.md)
    train_videos = make_puppet_videos(root / "videos_train", speakers=12, clips=3, seed=0, size=64,
                                      sentences_per_clip=1, per_sound=False)
    test_videos = make_puppet_videos(root / "videos_test", speakers=2, clips=2, seed=1, size=64,
                                     sentences_per_clip=1, per_sound=False)
    options = PrepareOptions(crop_size=32, landmarks="truth")
    prepare(train_videos, root / "train", options, progress=False)
    prepare(test_videos, root / "test", options, progress=False)
    fit_basis(root / "train")
    return {"root": root, "train": root / "train", "test": root / "test", "train_videos": train_videos}


@pytest.fixture(scope="module")
def small_puppet(tmp_path_factory) -> dict[str, Path]:
    """2 speakers x 2 short clips: enough for the plumbing tests (a few seconds)."""
    root = tmp_path_factory.mktemp("small_puppet")
    videos = make_puppet_videos(root / "videos", speakers=2, clips=2, seed=3, size=64, sentences_per_clip=1)
    prepare(videos, root / "train", PrepareOptions(crop_size=32, landmarks="truth"), progress=False)
    fit_basis(root / "train")
    return {"root": root, "train": root / "train", "train_videos": videos}


def test_prepare_layout_and_resume(small_puppet):
    puppet = small_puppet
    index = json.loads((puppet["train"] / "index.json").read_text())
    assert index["clips"] == 4 and index["skipped"] == 0 and len(index["speakers"]) == 2
    clip = load_dataset(puppet["train"], with_crops=True)[0]
    t = len(clip)
    assert clip.crops.shape == (t, 32, 32, 3) and clip.crops.dtype == np.uint8
    assert clip.landmarks.shape == (t, 478, 3) and clip.features.shape == (t, 320) and clip.usable.all()
    # A second run does nothing new; a broken file is skipped with its reason and counted, never silently.
    bad = next(p for p in puppet["train_videos"].iterdir() if p.is_dir()) / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    try:
        summary = prepare(puppet["train_videos"], puppet["root"] / "train_again", PrepareOptions(32, "auto"),
                          progress=False)
        assert summary["skipped"] == 1 and "broken.mp4" in summary["skipped_files"][0]["video"]
        assert summary["skipped_files"][0]["reason"]
        again = prepare(puppet["train_videos"], puppet["root"] / "train_again", PrepareOptions(32, "auto"),
                        progress=False)
        assert again["already_done"] == 4 and again["prepared_now"] == 0 and again["skipped"] == 1
    finally:
        bad.unlink()


def test_checkpoint_resume_continues(small_puppet, tmp_path):
    puppet = small_puppet
    out = tmp_path / "m"
    train_motion(puppet["train"], out, tiny_config(4, checkpoint_every=2, log_every=1), progress=False)
    assert (out / "motion_run" / "checkpoints" / "step_0000004" / "run_state.json").is_file()
    train_motion(puppet["train"], out, tiny_config(6, checkpoint_every=2, log_every=1), resume="latest",
                 progress=False)
    steps = [row["step"] for row in read_log(out / "motion_run")]
    assert steps == [1, 2, 3, 4, 5, 6]
    model = load_model(out / "motion.safetensors", "motion")
    assert model.config.d_model == 32 and (out / "mouth_model.safetensors").is_file()


def test_random_reference_lengths_pad_and_mask(small_puppet):
    """``min_reference_frames``: references of many lengths in one batch shape, padding zeroed and masked;
    with min = n the sampler draws exactly what the fixed-length (paper) sampler draws."""
    clips = motion_clips(load_dataset(small_puppet["train"], min_frames=2), load_basis(small_puppet["train"]))
    varlen = MotionSampler(clips, 16, 48, min_reference_frames=4)
    lengths = []
    for i in range(60):
        s = varlen(np.random.default_rng([7, i]))
        assert s["ref_audio"].shape[0] == s["ref_params"].shape[0] == s["ref_pad"].shape[0] == 48
        pad = s["ref_pad"]
        k = int((~pad).sum())
        assert not pad[:k].any() and pad[k:].all()  # one window, then padding
        assert not s["ref_audio"][pad].any() and not s["ref_params"][pad].any()
        lengths.append(k)
    assert min(lengths) >= 1 and max(lengths) <= 48 and len(set(lengths)) > 10
    assert np.median(lengths) < 30  # log-uniform in [4, 48]: median about 14 (when the speaker has the frames)
    fixed, same = MotionSampler(clips, 16, 48), MotionSampler(clips, 16, 48, min_reference_frames=48)
    for i in range(5):
        a, b = fixed(np.random.default_rng([9, i])), same(np.random.default_rng([9, i]))
        assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(Exception, match="min_reference_frames"):
        MotionSampler(clips, 16, 48, min_reference_frames=64)


@pytest.mark.slow
def test_tiny_stage1_beats_no_audio_baseline(puppet, tmp_path):
    """A few hundred steps on 12 puppet speakers: held-out speakers' lips follow the audio better than the
    best audio-free guess (the training set's per-parameter median mouth)."""
    out = tmp_path / "motion"
    train_motion(puppet["train"], out, tiny_config(400), progress=False)
    log = read_log(out / "motion_run")
    assert log[-1]["loss"] < 0.6 * log[0]["loss"]
    mouth = load_basis(puppet["train"])
    model = load_model(out / "motion.safetensors", "motion")
    test = motion_clips(load_dataset(puppet["test"]), mouth)
    metrics = motion_metrics(model, mouth, test, 32, EvalOptions(padded_silence_s=0.0))
    train = motion_clips(load_dataset(puppet["train"]), mouth)
    median = np.median(np.concatenate([c.params[c.usable] for c in train]), axis=0)
    baseline = np.mean([
        lip_lmd(mouth.decode(np.broadcast_to(median, c.params.shape), c.neutral), mouth.decode(c.params, c.neutral))
        for c in test
    ])
    assert metrics["lip_lmd"] < 0.85 * baseline, (metrics["lip_lmd"], baseline)

    # the style measures on the same model: s = 1 is exactly the evaluation's prediction; the transfer
    # table covers both ordered pairs of the 2 held-out speakers, every class both speakers say
    from lipsync_core.train.style_measures import sound_labels, style_strength, style_transfer

    strength = style_strength(model, mouth, test, 32)
    assert abs(strength[1.0] - metrics["lip_lmd"]) < 1e-6 and all(np.isfinite(list(strength.values())))
    labels = [sound_labels(puppet["test"], c) for c in test]
    assert all(len(lab) == len(c.params) and (lab >= 0).any() for lab, c in zip(labels, test, strict=True))
    transfer = style_transfer(model, mouth, test, labels, 32)
    assert transfer["pairs"] == 2 and transfer["cases"] >= 6
    assert all(np.isfinite([r["t_ab"], r["t_aa"], r["d_to_a"], r["d_to_b"]]).all() for r in transfer["rows"])


def test_merged_prepared_folders_hold_every_clip_once_and_one_basis(tmp_path):
    """The recipe's stage-1 data: the training speakers' clips and more speakers', the training speakers' basis."""
    def folder(name: str, keys: list[str], basis: bytes | None = None):
        (tmp_path / name / "clips").mkdir(parents=True)
        for key in keys:
            (tmp_path / name / "clips" / f"{key}.npz").write_bytes(key.encode())
            (tmp_path / name / "clips" / f"{key}.json").write_text("{}")
        if basis is not None:
            (tmp_path / name / "mouth_model.safetensors").write_bytes(basis)
        return tmp_path / name

    train = folder("train", ["s0__a", "s0__b"], basis=b"basis")
    more = folder("more", ["s3__a"])
    (more / "clips" / "s3__unfinished.npz").write_bytes(b"no json: not done")
    merged = merge_prepared([train, more], tmp_path / "merged", basis_from=train)
    assert [p.stem for p in clip_paths(merged)] == ["s0__a", "s0__b", "s3__a"]
    assert (merged / "clips" / "s3__a.npz").read_bytes() == b"s3__a"
    assert (merged / "mouth_model.safetensors").read_bytes() == b"basis"
    assert merge_prepared([train, more], tmp_path / "merged", basis_from=train) == merged  # again: no change
    with pytest.raises(LipSyncInputError, match="s0__a"):
        merge_prepared([train, folder("again", ["s0__a"])], tmp_path / "clash")
