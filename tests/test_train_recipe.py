"""The demo recipe end to end at a tiny scale, with its two training lanes (stage 1 in a second process)."""

from __future__ import annotations

import json

import pytest

from lipsync_core.synthetic.identity import face_mesh_available
from lipsync_core.synthetic.tts import espeak_available
from lipsync_core.train.dataset import clip_paths
from lipsync_core.train.demo_recipe import run_recipe

pytestmark = pytest.mark.skipif(not (espeak_available() and face_mesh_available()),
                                reason="needs espeak-ng (espeakng-loader) and the face-mesh template")

TINY_DATA = {"train_speakers": 3, "train_clips": 2, "test_speakers": 1, "test_clips": 2, "size": 64,
             "sentences_per_clip": 1, "crop_size": 32, "motion_speakers": 2, "motion_clips": 1}


def test_recipe_runs_every_stage_in_two_lanes(tmp_path):
    work = tmp_path / "recipe"
    summary = run_recipe(work, scale=0.001, landmarks="truth", workers=1, data=TINY_DATA, jobs=2, compare_none=True)
    times = summary["stage_seconds"]
    for stage in ("puppet data", "prepare", "fit-basis", "stage-1 data", "train-vae", "train-motion",
                  "train-motion (none)", "train-renderer", "renderer fine-tune", "decoder fine-tune", "eval",
                  "eval (none)", "training wall (lanes)"):
        assert stage in times, stage
    assert summary["stage1_pid"] != summary["pid"]  # stage 1 trained in the second lane's process
    assert summary["total_seconds"] >= times["training wall (lanes)"] > 0
    for name in ("motion.safetensors", "renderer.safetensors", "vae.safetensors", "mouth_model.safetensors"):
        assert (work / "models" / name).is_file(), name
    assert (work / "motion_none" / "motion.safetensors").is_file()
    # the shipped files are the fine-tunes': the renderer from the first renderer, the VAE with its encoder kept
    assert (work / "renderer_base" / "renderer.safetensors").is_file()
    assert (work / "models" / "vae.safetensors").read_bytes() == (work / "vae_decoder" / "vae.safetensors").read_bytes()
    # stage 1 (and its twin) alone trains on the extra speakers, in the training speakers' mouth basis
    assert len(clip_paths(work / "data_motion")) == len(clip_paths(work / "data_train")) + 2
    for run in ("models/motion_run", "motion_none/motion_run"):
        assert json.loads((work / run / "train_config.json").read_text())["data"] == str(work / "data_motion")
    assert (work / "data_motion" / "mouth_model.safetensors").read_bytes() == (
        work / "data_train" / "mouth_model.safetensors").read_bytes()
    tuned = json.loads((work / "models" / "renderer_run" / "train_config.json").read_text())
    assert tuned["init"] == str(work / "renderer_base" / "renderer.safetensors")
    assert tuned["data"] == str(work / "data_train")
    assert tuned["context_from_other_frame"] == 0.9 and tuned["one_sided_references"] == 0.9
    decoder = json.loads((work / "vae_decoder" / "vae_run" / "train_config.json").read_text())
    assert decoder["init"] == str(work / "vae" / "vae.safetensors") and decoder["mixed_upper"] == 0.5
    assert not decoder["train_encoder"]
    for stage, steps in summary["steps"].items():
        assert steps == 10, stage  # the scale's floor
    saved = json.loads((work / "recipe_summary.json").read_text())
    assert saved["jobs"] == 2 and saved["eval"]["frames"] > 0 and saved["none"]["lip_lmd"] > 0
    assert saved["render"]["rendered_frames"] > 0 and 0 < saved["render"]["psnr"] < 100
    # both puppet sets were written by two processes and are complete
    manifest = json.loads((work / "videos_train" / "manifest.json").read_text())
    assert len(manifest["clips"]) == 6
