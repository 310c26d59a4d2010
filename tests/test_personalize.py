"""Personalize (issue 16): a few fine-tuning steps on the demo person's footage from the shipped demo models.

The held-out losses fall, the best weights are what the folder holds, the folder loads in `run`, a run resumes
and an existing folder is never overwritten by accident.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsync_core.models.io import load_model
from lipsync_core.train.personalize import (
    RECORD_FILE,
    WORK_DIR,
    Footage,
    PersonalizeOptions,
    personalize,
)
from lipsync_core.types import DEMO_CLIPS, DEMO_MODELS, MODEL_FILES, LipSyncInputError
from lipsync_core.weights import load_tensors

STEPS = {"vae": 8, "renderer": 12, "motion": 12}


def footage() -> list[Footage]:
    """The demo person's two clips (5.3 s), exact puppet meshes instead of tracking (speed)."""
    return [Footage(str(DEMO_CLIPS / f"{n}.mp4"), path=DEMO_CLIPS / f"{n}.mp4") for n in ("video", "reference")]


def options(**more) -> PersonalizeOptions:
    return PersonalizeOptions(jobs=1, landmarks="auto", stage_steps=dict(STEPS), **more)


@pytest.fixture(scope="module")
def personalized(tmp_path_factory) -> tuple[Path, dict]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("personal") / "models"
    record = personalize(footage(), out, DEMO_MODELS, options(keep_work=True), progress=False)
    return out, record


@pytest.mark.slow
def test_held_out_losses_fall_and_the_best_weights_are_kept(personalized):
    out, record = personalized
    assert record["steps"] == STEPS
    assert record["validation_frames"] >= 16 and record["frames"] == 52 + 81
    for stage, v in record["validation"].items():
        assert v["val_loss_best"] < v["val_loss_first"], (stage, v)
    # The folder's renderer is the best held-out checkpoint (not the last step), with the record in its metadata.
    best = load_model(out / WORK_DIR / "renderer" / "renderer_run" / "best.safetensors", "renderer")
    kept = load_model(out / MODEL_FILES["renderer"], "renderer")
    for a, b in zip(best.state_dict().values(), kept.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    meta = load_tensors(out / MODEL_FILES["motion"], "motion").extra["personalized"]
    assert meta["base"] == str(DEMO_MODELS) and len(meta["footage"]) == 2
    assert json.loads((out / RECORD_FILE).read_text())["steps"] == STEPS
    # Only the decoder learned: the encoder (the renderer's latent space) is the base's.
    base_vae, vae = load_model(DEMO_MODELS / "vae.safetensors", "vae"), load_model(out / "vae.safetensors", "vae")
    assert torch.equal(base_vae.encoder.conv_in.weight, vae.encoder.conv_in.weight)
    assert not torch.equal(base_vae.decoder.conv_out.weight, vae.decoder.conv_out.weight)


@pytest.mark.slow
def test_the_folder_lip_syncs_in_run(personalized, tmp_path):
    from lipsync_core.cli import main
    from lipsync_core.media import read_video

    out, _ = personalized
    video = tmp_path / "out.mp4"
    code = main(["run", "--models", str(out), "--video", str(DEMO_CLIPS / "video.mp4"), "--audio",
                 str(DEMO_CLIPS / "target.wav"), "--out", str(video), "--steps", "2"])
    assert code == 0
    frames, fps = read_video(video)
    assert fps == 25 and len(frames) > 40 and frames.std() > 10


@pytest.mark.slow
def test_an_interrupted_run_resumes_from_its_checkpoints(tmp_path):
    """A cancel between steps (as the node's) stops the run; --resume continues from the last checkpoint."""
    out = tmp_path / "models"
    steps = {"vae": 2, "renderer": 6, "motion": 2}
    calls = {"n": 0}

    class Cancelled(Exception):
        pass

    def cancel_at_renderer_step_5(stage: str, step: int, total: int, val) -> None:
        if stage == "renderer" and step == 5:
            raise Cancelled

    from lipsync_core.train.personalize import Callbacks

    opts = PersonalizeOptions(jobs=1, landmarks="auto", stage_steps=steps, keep_work=True)
    with pytest.raises(Cancelled):
        personalize(footage(), out, DEMO_MODELS, opts, Callbacks(progress=cancel_at_renderer_step_5), progress=False)
    assert (out / WORK_DIR / "vae" / "vae.safetensors").is_file()  # a finished stage is kept
    assert not (out / MODEL_FILES["renderer"]).exists()
    with pytest.raises(LipSyncInputError, match="--resume"):
        personalize(footage(), out, DEMO_MODELS, opts, progress=False)

    def count(stage: str, step: int, total: int, val) -> None:
        calls["n"] += stage == "renderer"

    # A checkpoint every third of the run: the renderer resumes from step 4 (2 steps left); the finished VAE
    # stage is not trained again.
    record = personalize(footage(), out, DEMO_MODELS, PersonalizeOptions(**{**opts.__dict__, "resume": True}),
                         Callbacks(progress=count), progress=False)
    assert record["steps"]["renderer"] == 6 and calls["n"] == 2
    assert (out / MODEL_FILES["renderer"]).is_file()


def test_bad_inputs_say_what_and_write_nothing(tmp_path):
    out = tmp_path / "models"
    short = [Footage("target.mp4", path=DEMO_CLIPS / "target.mp4")]  # 1.8 s
    with pytest.raises(LipSyncInputError, match=r"too short.*at least 4 s"):
        personalize(short, out, DEMO_MODELS, options())
    assert not out.exists()
    black = [Footage("images", frames=np.zeros((120, 64, 64, 3), np.uint8), fps=25.0,
                     wave=np.zeros(16000 * 5, np.float32))]
    with pytest.raises(LipSyncInputError, match="images: no face found"):
        personalize(black, out, DEMO_MODELS, options())
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(LipSyncInputError, match="--overwrite"):
        personalize(footage(), out, DEMO_MODELS, options())
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_base_models_that_do_not_fit_are_refused(tmp_path):
    from lipsync_core.models.io import save_model
    from lipsync_core.train.vae import build_vae

    base = tmp_path / "base"
    shutil.copytree(DEMO_MODELS, base)
    other = build_vae({"latent_channels": 4, "block_out_channels": [8, 16, 16], "layers_per_block": 1,
                       "norm_num_groups": 4})
    save_model(other, base / "vae.safetensors")
    with pytest.raises(LipSyncInputError, match=r"--base: the renderer works on 8-channel latents"):
        personalize(footage(), tmp_path / "out", base, options())
    (base / "vae.safetensors").unlink()
    with pytest.raises(LipSyncInputError, match="--base: .* has no vae.safetensors"):
        personalize(footage(), tmp_path / "out", base, options())
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_time_budget_stops_every_stage_and_still_writes_a_folder(tmp_path):
    """--minutes: each stage stops at its share of the clock; the best held-out weights so far are exported."""
    from lipsync_core.models.bundle import LipSyncModels

    opts = PersonalizeOptions(jobs=1, landmarks="auto", minutes=0.02, steps=1000)
    record = personalize(footage(), tmp_path / "models", DEMO_MODELS, opts, progress=False)
    assert record["stopped_by_time"] == ["motion", "renderer", "vae"]
    assert record["steps"]["renderer"] < 1000 and record["steps"]["motion"] < 500
    LipSyncModels.from_folder(tmp_path / "models")
