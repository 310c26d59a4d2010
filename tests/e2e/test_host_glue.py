"""The host glue on ComfyUI's real code (run in the host's Python by host_glue_probe.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("host_glue_probe.py")


@pytest.fixture(scope="module")
def probe(comfy_path, comfy_python) -> dict:
    flags = os.environ.get("COMFYUI_FLAGS", "--cpu").split()
    done = subprocess.run(
        [comfy_python, str(PROBE), str(comfy_path), str(ROOT), *flags],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_models_folder_is_registered_next_to_extra_model_paths(probe, comfy_path):
    extra, default = probe["folder_paths"]
    assert "slsync-extra-" in extra, "a user's extra_model_paths.yaml folder must stay first"
    assert default == str(comfy_path / "models" / "stylelipsync")
    assert probe["folder_extensions"] == [".safetensors"]
    assert "a.safetensors" in probe["listed"] and "notes.txt" not in probe["listed"]
    assert "StyleLipSyncModelInfo" in probe["node_ids"]


def test_models_are_managed_by_comfy(probe):
    assert probe["patcher_type"] == "comfy.model_patcher.ModelPatcher"
    assert probe["ready_is_module"] and probe["forward_ok"]
    assert probe["patcher_size"] == (64 * 64 + 64 + 64 * 8 + 8) * 4
    assert probe["loaded_after_ready"] is True
    assert probe["loaded_after_unload_all"] is False  # model management can free it like its own
    assert probe["loaded_after_ready_again"] is True


def test_model_files_load_once_into_model_patchers(probe):
    assert probe["loader_same_object"] and probe["loader_loads"] == 1
    assert probe["loader_patcher"] == "ModelPatcher" and probe["loader_forward_ok"]


def test_fps_of_core_video_objects(probe):
    assert probe["fps_video_from_file"] == 12.5
    assert abs(probe["fps_video_from_components"] - 29.97003) < 1e-4


def test_progress_bar_and_interruption(probe):
    assert probe["progress_calls"][:2] == [[1, 4], [3, 4]]
    assert probe["interrupt"] == "raised"
    assert probe["interrupt_cleared"] is True


def test_every_comfy_attention_backend_matches_sdpa(probe):
    assert "attention_basic" in probe["attention_max_abs_error"]
    for backend, err in probe["attention_max_abs_error"].items():
        assert err < 1e-5, f"{backend}: {err}"


def test_comfy_attention_is_installed_in_the_core_hook(probe):
    if not probe["core_has_hook"]:
        assert probe["installed_backend"] == "sdpa-default"
        pytest.skip("lipsync_core.models.attention is not in this checkout yet")
    assert probe["installed_backend"] == probe["chosen_attention"]
    assert probe["core_override_during"] and probe["core_backend_during"] == "override"
    assert probe["core_error_during"] < 1e-5
    assert probe["core_override_after"] is False  # restored after the node ran
