"""The workflow checker and the UI->API converter on small hand-made graphs (no host needed).

The same two are checked against the real frontend in tests/e2e/test_web.py (our conversion equals
the frontend's graphToPrompt output for every example workflow).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
from workflow_check import (
    HOST_NODE_NAMES,
    check_workflow,
    earlier_inputs,
    earlier_workflow_files,
    pack_object_info,
    widget_names,
    workflow_files,
)

sys.path.insert(0, str(Path(__file__).parent / "e2e"))
from comfy_client import ComfyError, ui_to_api  # noqa: E402

INFO = {
    "Sampler": {
        "input": {
            "required": {
                "model": ["MODEL"],
                "seed": ["INT", {"default": 0, "min": 0, "max": 2**32}],
                "steps": ["INT", {"default": 20, "min": 1, "max": 100}],
                "mode": [["fast", "good"]],
                "scale": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0}],
            },
            "optional": {"fps": ["FLOAT", {"forceInput": True}], "note": ["STRING", {}]},
        },
        "input_order": {"required": ["model", "seed", "steps", "mode", "scale"], "optional": ["fps", "note"]},
        "output": ["IMAGE"],
    },
    "Loader": {"input": {"required": {"name": [["a.bin", "b.bin"]]}}, "output": ["MODEL", "FLOAT"]},
}


def _node(nid, ntype, widgets, inputs=(), outputs=(), mode=0):
    return {
        "id": nid, "type": ntype, "mode": mode, "widgets_values": widgets,
        "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs],
        "outputs": [{"name": n, "type": t, "links": links} for n, t, links in outputs],
    }  # fmt: skip


def _graph():
    return {
        "nodes": [
            _node(1, "Loader", ["b.bin"], outputs=[("MODEL", "MODEL", [1]), ("FLOAT", "FLOAT", [2])]),
            _node(2, "Sampler", [7, "fixed", 30, "good", 1.5, "hi"],
                  inputs=[("model", "MODEL", 1), ("fps", "FLOAT", 2)], outputs=[("IMAGE", "IMAGE", [])]),
        ],
        "links": [[1, 1, 0, 2, 0, "MODEL"], [2, 1, 1, 2, 1, "FLOAT"]],
    }  # fmt: skip


def test_widget_layout_follows_the_frontend():
    # seed gets a control-after-generate slot; a forceInput FLOAT has no widget
    assert widget_names(INFO["Sampler"]) == ["seed", None, "steps", "mode", "scale", "note"]


def test_a_valid_graph_passes_and_converts():
    graph = _graph()
    assert check_workflow(graph, INFO) == []
    prompt = ui_to_api(graph, INFO)
    assert prompt["2"]["inputs"] == {
        "model": ["1", 0], "fps": ["1", 1], "seed": 7, "steps": 30, "mode": "good", "scale": 1.5, "note": "hi",
    }  # fmt: skip
    assert prompt["1"] == {"class_type": "Loader", "inputs": {"name": "b.bin"}, "_meta": {"title": "Loader"}}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda g: g["nodes"][1]["widgets_values"].__setitem__(2, 500), "'steps': 500 is outside [1, 100]"),
        (lambda g: g["nodes"][1]["widgets_values"].__setitem__(3, "best"), "'mode': 'best' is not one of"),
        (lambda g: g["nodes"][1]["widgets_values"].__setitem__(4, "1.0"), "'scale': '1.0' is not a number"),
        (lambda g: g["nodes"][1]["widgets_values"].__setitem__(2, 2.5), "'steps': 2.5 is not an integer"),
        (lambda g: g["nodes"][1].__setitem__("widgets_values", [7]), "1 widget values for 6 widgets"),
        (lambda g: g["nodes"][0].__setitem__("type", "Lodaer"), "no such node type"),
        (lambda g: g["links"][1].__setitem__(2, 0), "MODEL output into FLOAT input 'fps'"),
        (lambda g: g["nodes"][1]["inputs"][0].__setitem__("link", None), "required input 'model' is not connected"),
        (lambda g: g["links"].append([9, 1, 0, 7, 0, "MODEL"]), "joins a node that does not exist"),
        (lambda g: g["nodes"].append(copy.deepcopy(g["nodes"][0])), "node id 1 is used twice"),
    ],
)
def test_each_kind_of_mistake_is_named(edit, expected):
    graph = _graph()
    edit(graph)
    problems = check_workflow(graph, INFO)
    assert any(expected in p for p in problems), problems


def test_offline_foreign_nodes_are_listed_or_refused():
    graph = _graph()
    graph["nodes"].append(_node(3, "VHS_VideoCombine", {"frame_rate": 8}))
    assert check_workflow(graph, INFO) == []  # listed: accepted unchecked offline
    assert "VHS_VideoCombine" in HOST_NODE_NAMES
    assert check_workflow(graph, INFO, host_names=()) == ["node 3 (VHS_VideoCombine): no such node type"]


def test_conversion_follows_reroutes_and_drops_frontend_only_and_muted_nodes():
    graph = _graph()
    # Loader.MODEL -> Reroute(3) -> Sampler.model ; a PrimitiveNode(4) feeding 'steps' ; a muted Loader(5)
    graph["nodes"][1]["inputs"][0]["link"] = 11
    graph["nodes"].append(_node(3, "Reroute", [], inputs=[("", "*", 1)], outputs=[("", "MODEL", [11])]))
    graph["nodes"].append(_node(4, "PrimitiveNode", [30, "fixed"], outputs=[("INT", "INT", [12])]))
    graph["nodes"][1]["inputs"].append({"name": "steps", "type": "INT", "link": 12, "widget": {"name": "steps"}})
    graph["nodes"].append(_node(5, "Loader", ["a.bin"], mode=2))
    graph["links"] = [[1, 1, 0, 3, 0, "MODEL"], [2, 1, 1, 2, 1, "FLOAT"], [11, 3, 0, 2, 0, "MODEL"],
                      [12, 4, 0, 2, 2, "INT"]]  # fmt: skip
    prompt = ui_to_api(graph, INFO)
    assert sorted(prompt) == ["1", "2"]
    assert prompt["2"]["inputs"]["model"] == ["1", 0] and prompt["2"]["inputs"]["steps"] == 30
    graph["nodes"][1]["mode"] = 4
    with pytest.raises(ComfyError, match="bypassed"):
        ui_to_api(graph, INFO)


def test_dict_widgets_values_as_videohelpersuite_saves_them():
    info = {"Combine": {"input": {"required": {"frame_rate": ["FLOAT", {}], "format": [["video/h264-mp4"]]}},
                        "output": []}}  # fmt: skip
    graph = {
        "nodes": [_node(1, "Combine", {"frame_rate": 12.5, "format": "video/h264-mp4", "crf": 19, "videopreview": {}})],
        "links": [],
    }
    assert check_workflow(graph, info) == []
    assert ui_to_api(graph, info)["1"]["inputs"] == {"frame_rate": 12.5, "format": "video/h264-mp4", "crf": 19}


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_example_workflows_pass_offline(path):
    assert check_workflow(json.loads(path.read_text(encoding="utf-8")), pack_object_info()) == []


@pytest.mark.parametrize("path", earlier_workflow_files(), ids=lambda p: p.name)
def test_workflows_saved_with_0_1_pass_offline(path):
    """Today's pack against the example workflows of 0.1 (kept as fixtures): every node, widget value and link
    still fits; a link into an input that no longer exists is one the node still accepts (EARLIER_INPUTS)."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    assert check_workflow(workflow, pack_object_info(), earlier=earlier_inputs()) == []
