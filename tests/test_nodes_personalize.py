"""The Personalize node: trains from the connected models on footage, saves a folder Load Models lists, gives a
bundle the other nodes render with, is not retrained for the same inputs, honours Cancel and resumes."""

from __future__ import annotations

import json

import pytest
import torch
from node_samples import demo_footage, run
from StyleLipSync.nodes import host, lipsync_nodes

import lipsync_core.train.personalize as core_personalize
from lipsync_core.types import MODEL_FILES, LipSyncInputError

STEPS = 6  # renderer 6, stage 1 3, decoder 2


def inputs(**more) -> dict:
    demo = run("StyleLipSyncLoadModels", "demo (shipped)", "demo (shipped)", "demo (shipped)", "demo (shipped)")[0]
    return {"models": demo, "name": "person", "steps": STEPS, "minutes": 0.0, "training_seed": 0, "overwrite": False,
            **demo_footage(), **more}


@pytest.fixture
def save_root(tmp_path, monkeypatch):
    monkeypatch.setattr(host, "SAVE_ROOT", tmp_path)
    return tmp_path


@pytest.mark.slow
def test_personalize_node_trains_saves_and_its_models_render(save_root, monkeypatch):
    torch.set_num_threads(1)
    with torch.inference_mode():  # as ComfyUI runs every node
        bundle, report = run("StyleLipSyncPersonalize", **inputs())
    folder = save_root / "person"
    assert all((folder / name).is_file() for name in MODEL_FILES.values())
    record = json.loads((folder / core_personalize.RECORD_FILE).read_text())
    assert record["steps"] == {"vae": 2, "renderer": 6, "motion": 3}
    renderer = record["validation"]["renderer"]
    assert renderer["val_loss_best"] < renderer["val_loss_first"]
    assert str(folder) in report and "renderer: 6 steps" in report
    assert bundle.files["renderer"] == str(folder / MODEL_FILES["renderer"])
    # The bundle renders in the all-in-one node like Load Models' output.
    footage = demo_footage()
    audio = footage["audio"]
    audio = {**audio, "waveform": audio["waveform"][..., : audio["sample_rate"] * 16 // 25]}  # 16 frames' worth
    out = run("StyleLipSyncLipSync", models=bundle, images=footage["images"][:16], audio=audio, fps=25.0,
              length_policy="trim_to_audio", style_strength=1.0, sampler="ddim", steps=2, seed=0, chunk_size=8)
    assert out[0].shape == footage["images"][:16].shape

    # Same inputs: the saved folder is loaded, nothing is trained.
    def no_training(*_args, **_kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(core_personalize, "personalize", no_training)
    again, _ = run("StyleLipSyncPersonalize", **inputs())
    assert again.files == bundle.files
    # Other inputs under the same name: refused unless overwrite.
    with pytest.raises(LipSyncInputError, match=r"^name: .*overwrite"):
        run("StyleLipSyncPersonalize", **inputs(training_seed=1))


@pytest.mark.slow
def test_cancel_stops_between_steps_and_a_rerun_resumes(save_root, monkeypatch):
    class Interrupted(Exception):
        pass

    calls = {"n": 0}

    def cancel_at_the_tenth_step() -> None:
        calls["n"] += 1
        if calls["n"] == 10:
            raise Interrupted

    monkeypatch.setattr(lipsync_nodes, "check_interrupted", cancel_at_the_tenth_step)
    with pytest.raises(Interrupted):
        run("StyleLipSyncPersonalize", **inputs(name="cancelled"))
    folder = save_root / "cancelled"
    assert not (folder / MODEL_FILES["renderer"]).exists()
    assert (folder / core_personalize.WORK_DIR / "vae" / "vae.safetensors").is_file()  # the decoder had finished
    monkeypatch.setattr(lipsync_nodes, "check_interrupted", lambda: None)
    bundle, report = run("StyleLipSyncPersonalize", **inputs(name="cancelled"))
    assert (folder / MODEL_FILES["renderer"]).is_file() and not (folder / core_personalize.WORK_DIR).exists()
    assert "renderer: 6 steps" in report
