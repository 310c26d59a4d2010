"""The pack inside a running ComfyUI: registration, import log, example workflows, a real run."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from comfy_client import ComfyError, cached_nodes, elapsed_seconds, ui_to_api
from StyleLipSync.nodes import NODE_CLASS_MAPPINGS
from StyleLipSync.nodes.lipsync_nodes import ALL_FILES
from workflow_check import check_workflow, combo_choices, pack_object_info, workflow_files

from lipsync_core.weights import save_tensors


def test_object_info_lists_every_node(comfy_host):
    info = comfy_host.object_info(refresh=True)
    missing = sorted(set(NODE_CLASS_MAPPINGS) - set(info))
    assert missing == [], f"the host does not list {missing}: see the server log"
    local = pack_object_info()
    for node_id in NODE_CLASS_MAPPINGS:
        hosted = info[node_id]
        # ours, not a core node of the same name (ComfyUI keeps its own and silently skips ours)
        assert hosted["python_module"].startswith("custom_nodes."), hosted["python_module"]
        assert hosted["category"] == local[node_id]["category"]
        assert hosted["output"] == local[node_id]["output"]
        assert hosted["output_name"] == local[node_id]["output_name"]
        assert hosted["input_order"] == local[node_id]["input_order"]


def test_server_log_shows_no_import_failure(comfy_host, comfy_log):
    if not comfy_log.is_file():
        pytest.skip(f"no server log at {comfy_log} (set COMFYUI_LOG)")
    text = comfy_log.read_text(encoding="utf-8", errors="replace")
    assert "IMPORT FAILED" not in text, [line for line in text.splitlines() if "IMPORT FAILED" in line]
    import_lines = [line for line in text.splitlines() if "seconds" in line and "custom_nodes" in line]
    ours = [line for line in import_lines if "StyleLipSync" in line or "stylelipsync" in line.lower()]
    assert ours, f"the pack is not in the host's import list: {import_lines}"
    assert "Cannot import" not in text


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_example_workflow_is_valid_for_the_host(comfy_host, path):
    """Every node, widget value and link type checked against the live /object_info (core and VHS included)."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    assert check_workflow(workflow, comfy_host.object_info(), host_names=()) == []
    prompt = ui_to_api(workflow, comfy_host.object_info())
    assert {entry["class_type"] for entry in prompt.values()} <= set(comfy_host.object_info())


def _model_info_prompt(client, model: str) -> tuple[dict, str]:
    [path] = [p for p in workflow_files() if p.stem == "stylelipsync_model_info"]
    workflow = json.loads(path.read_text(encoding="utf-8"))
    prompt = ui_to_api(workflow, client.object_info(refresh=True))
    [node_id] = [k for k, v in prompt.items() if v["class_type"] == "StyleLipSyncModelInfo"]
    prompt = copy.deepcopy(prompt)
    prompt[node_id]["inputs"]["model"] = model
    return prompt, node_id


def test_model_info_workflow_runs_and_reuses_the_cache(comfy_host, host_models_dir):
    model = save_tensors(
        host_models_dir / "e2e-motion.safetensors",
        {"w": torch.ones(32, 16), "b": torch.zeros(16)},
        "motion",
        {"d_model": 256, "heads": 8, "test": "e2e"},
    )
    broken = host_models_dir / "e2e-broken.safetensors"
    broken.write_bytes(model.read_bytes()[:-8])

    key = f"header:{model.resolve()}"
    loads_before = comfy_host.request("GET", "/stylelipsync/cache")["loads"].get(key, 0)
    prompt, node_id = _model_info_prompt(comfy_host, model.name)
    choices = combo_choices(comfy_host.object_info()["StyleLipSyncModelInfo"]["input"]["required"]["model"])
    assert model.name in choices and broken.name in choices and ALL_FILES in choices

    entry = comfy_host.run(prompt, timeout=120)
    [report] = entry["outputs"][node_id]["stylelipsync_text"]
    assert report.startswith("e2e-motion.safetensors: OK") and "528 parameters" in report
    preview = [v["text"] for k, v in entry["outputs"].items() if k != node_id]
    assert preview == [[report]], "PreviewAny did not receive the report"

    # this version of the file (a new mtime on every test run) is read exactly once
    assert comfy_host.request("GET", "/stylelipsync/cache")["loads"].get(key) == loads_before + 1

    everything, node_id = _model_info_prompt(comfy_host, ALL_FILES)
    entry = comfy_host.run(everything, timeout=120)
    [report] = entry["outputs"][node_id]["stylelipsync_text"]
    assert "e2e-motion.safetensors: OK" in report
    assert "e2e-broken.safetensors: PROBLEM: truncated: 8 bytes missing" in report
    after = comfy_host.request("GET", "/stylelipsync/cache")
    assert after["loads"][key] == loads_before + 1, "the second run re-read a file it had cached"


def test_a_bad_model_name_fails_with_a_clear_message(comfy_host):
    prompt, _ = _model_info_prompt(comfy_host, "no-such-model.safetensors")
    with pytest.raises(ComfyError, match="no-such-model.safetensors"):
        comfy_host.run(prompt, timeout=60)


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_every_example_workflow_runs(example_runs, path):
    """Each example, converted to the API format, runs to success on the host as shipped."""
    entry = example_runs(path)
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"], "no output node produced anything"
    print(f"\n{path.stem}: {elapsed_seconds(entry):.1f} s on the host, {len(cached_nodes(entry))} nodes cached")


def test_example_workflows_are_in_the_template_browser(comfy_host):
    """ComfyUI lists them under the pack's folder name and serves each JSON and its .jpg thumbnail."""
    listing = comfy_host.request("GET", "/workflow_templates")
    [(module, names)] = [(m, n) for m, n in listing.items() if "stylelipsync_model_info" in n]
    assert sorted(names) == sorted(p.stem for p in workflow_files())
    for path in workflow_files():
        served = comfy_host.request("GET", f"/api/workflow_templates/{module}/{path.name}")
        assert served == json.loads(path.read_text(encoding="utf-8"))
        thumb = comfy_host.request("GET", f"/api/workflow_templates/{module}/{path.stem}.jpg")
        assert thumb[:3] == b"\xff\xd8\xff", "the thumbnail is not a JPEG"


def test_every_node_has_its_help_page_where_the_frontend_looks(comfy_host):
    """The frontend's node help panel fetches /extensions/<pack>/docs/<NodeId>.md (WEB_DIRECTORY is web/)."""
    info = comfy_host.object_info()
    for node_id in NODE_CLASS_MAPPINGS:
        module = info[node_id]["python_module"].split(".")[-1]  # custom_nodes.<folder>
        page = comfy_host.request("GET", f"/extensions/{module}/docs/{node_id}.md")
        text = page.decode() if isinstance(page, bytes) else str(page)
        assert text.startswith(f"# {info[node_id]['display_name']}"), (node_id, text[:80])
