"""Contract of every node of the pack (V3 schema), checked without a ComfyUI host.

Generic over the node list: a node added later is checked by the same rules. A node's outputs are
checked against its schema's outputs by really running it on the inputs :data:`SAMPLE_CALLS` builds.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from pack_loader import COMFY_SOURCE
from StyleLipSync import nodes
from StyleLipSync.nodes import NODE_CLASS_MAPPINGS
from StyleLipSync.nodes.host import CATEGORY, NODE_PREFIX, TYPE_PREFIX
from StyleLipSync.nodes.sockets import CUSTOM_TYPES
from workflow_check import check_widget_value, combo_choices, is_widget, spec_options, spec_type, workflow_files

from lipsync_core.weights import save_tensors

ROOT = Path(__file__).resolve().parents[1]

# Types other packs define that our nodes may take or give, each with where it comes from.
CORE_TYPES = frozenset(
    {
        "IMAGE", "MASK", "LATENT", "AUDIO", "VIDEO", "MODEL", "VAE", "CLIP", "CONDITIONING",  # ComfyUI core
        "AUDIO_ENCODER_OUTPUT",  # ComfyUI core, comfy_extras/nodes_audio_encoder.py
        "INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "*",  # widget / primitive types
        "VHS_VIDEOINFO",  # ComfyUI-VideoHelperSuite's video_info dict (fps source)
    }
)  # fmt: skip
HIDDEN_VALUES = frozenset(
    {"PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID", "DYNPROMPT", "AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"}
)
ROOT_DOCS = ROOT / "web" / "docs"

NODE_IDS = sorted(NODE_CLASS_MAPPINGS)


def _inputs(cls: type) -> dict[str, dict[str, Any]]:
    return cls.INPUT_TYPES()


def _accepts(fn: Callable[..., Any], names: list[str]) -> list[str]:
    """The names ``fn`` cannot take as keyword arguments."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    return [n for n in names if n not in params or params[n].kind is inspect.Parameter.POSITIONAL_ONLY]


def _needs(fn: Callable[..., Any]) -> list[str]:
    """Parameters without a default (besides self/cls)."""
    return [
        name
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


def test_pack_exports_a_v3_extension():
    import asyncio

    from comfy_api.latest import ComfyExtension, io

    assert NODE_IDS, "no node"
    root = (ROOT / "__init__.py").read_text(encoding="utf-8")
    assert "comfy_entrypoint" in root and "WEB_DIRECTORY" in root
    assert "NODE_CLASS_MAPPINGS" not in root, "ComfyUI takes the V1 path when the pack exports NODE_CLASS_MAPPINGS"
    assert (ROOT / "web" / "js").is_dir()
    extension = asyncio.run(nodes.comfy_entrypoint())
    assert isinstance(extension, ComfyExtension)
    listed = asyncio.run(extension.get_node_list())
    assert all(issubclass(cls, io.ComfyNode) for cls in listed)
    assert sorted(cls.GET_SCHEMA().node_id for cls in listed) == NODE_IDS


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_identity(node_id):
    cls = NODE_CLASS_MAPPINGS[node_id]
    schema = cls.GET_SCHEMA()
    assert node_id.startswith(NODE_PREFIX), f"{node_id}: ids start with {NODE_PREFIX}"
    assert schema.display_name and schema.display_name.startswith("StyleLipSync "), f"{node_id}: no display name"
    assert cls.CATEGORY == CATEGORY or cls.CATEGORY.startswith(CATEGORY + "/"), f"{node_id}: category {cls.CATEGORY}"
    assert isinstance(getattr(cls, "DESCRIPTION", ""), str) and cls.DESCRIPTION, f"{node_id}: add a description"


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_every_socket_and_widget_has_a_tooltip_and_the_node_a_help_page(node_id):
    schema = NODE_CLASS_MAPPINGS[node_id].GET_SCHEMA()
    missing = [i.id for i in schema.inputs or [] if not i.tooltip]
    missing += [o.display_name for o in schema.outputs or [] if not o.tooltip]
    assert missing == [], f"{node_id}: add tooltips to {missing}"
    page = ROOT_DOCS / f"{node_id}.md"
    assert page.is_file(), f"{node_id}: add the help page web/docs/{node_id}.md (the frontend shows it)"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# ") and len(text) > 300, f"{page.name}: a title and a few paragraphs"
    for i in schema.inputs or []:
        assert f"`{i.id}`" in text, f"{page.name}: describe the input `{i.id}`"


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_input_types(node_id):
    cls = NODE_CLASS_MAPPINGS[node_id]
    spec = _inputs(cls)
    assert isinstance(spec, dict) and set(spec) <= {"required", "optional", "hidden"}, spec.keys()
    assert json.dumps({k: v for k, v in spec.items() if k != "hidden"}, default=str)  # what /object_info sends
    seen: set[str] = set()
    for section in ("required", "optional"):
        for name, entry in (spec.get(section) or {}).items():
            assert name not in seen, f"{node_id}: input '{name}' declared twice"
            seen.add(name)
            assert isinstance(entry, tuple | list) and 1 <= len(entry) <= 2, f"{node_id}.{name}: {entry!r}"
            kind = spec_type(entry)
            if kind != "COMBO":
                assert kind in CORE_TYPES or kind.startswith(TYPE_PREFIX), f"{node_id}.{name}: custom type {kind}"
            if kind.startswith(TYPE_PREFIX):
                assert kind in CUSTOM_TYPES, f"{node_id}.{name}: {kind} is not declared in nodes/graph_types.py"
            opts = spec_options(entry)
            if is_widget(entry) and "default" in opts:
                problem = check_widget_value(name, entry, opts["default"])
                assert problem is None, f"{node_id}: default of {problem}"
            if kind == "COMBO":
                assert combo_choices(entry), f"{node_id}.{name}: a combo with no choices cannot be used"
    for name, value in (spec.get("hidden") or {}).items():
        assert value[0] in HIDDEN_VALUES, f"{node_id}: hidden input {name}={value!r}"


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_execute_signature(node_id):
    """``execute`` takes every declared input by name and needs only the required ones (hidden inputs reach a
    V3 node as ``cls.hidden``, not as arguments); so does ``fingerprint_inputs``."""
    cls = NODE_CLASS_MAPPINGS[node_id]
    spec = _inputs(cls)
    declared = [n for s in ("required", "optional") for n in (spec.get(s) or {})]
    assert _accepts(cls.execute, declared) == [], f"{node_id}: execute() cannot take these inputs"
    required = set(spec.get("required") or {})
    unfed = [n for n in _needs(cls.execute) if n not in required]
    assert unfed == [], f"{node_id}: execute() needs {unfed}, which are not required inputs"
    if "fingerprint_inputs" in vars(cls):
        assert [n for n in _needs(cls.fingerprint_inputs) if n not in required] == [], node_id


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_return_declarations(node_id):
    cls = NODE_CLASS_MAPPINGS[node_id]
    n = len(cls.RETURN_TYPES)
    for attr in ("RETURN_NAMES", "OUTPUT_IS_LIST", "OUTPUT_TOOLTIPS"):
        if hasattr(cls, attr):
            assert len(getattr(cls, attr)) == n, f"{node_id}: {attr} has {len(getattr(cls, attr))} entries, not {n}"
    for kind in cls.RETURN_TYPES:
        assert kind in CORE_TYPES or kind in CUSTOM_TYPES, f"{node_id}: output type {kind} undeclared"
    if n == 0:
        assert getattr(cls, "OUTPUT_NODE", False), f"{node_id}: a node with no outputs must be an OUTPUT_NODE"


# ---------------------------------------------------------------------------- running each node


def _check_value(kind: str, value: Any) -> str | None:
    if kind in CUSTOM_TYPES:
        return None if isinstance(value, CUSTOM_TYPES[kind]) else f"{type(value).__name__} for {kind}"
    checks: dict[str, Callable[[Any], bool]] = {
        "STRING": lambda v: isinstance(v, str),
        "INT": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "FLOAT": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
        "BOOLEAN": lambda v: isinstance(v, bool),
        "IMAGE": lambda v: isinstance(v, torch.Tensor) and v.ndim == 4 and v.shape[-1] in (3, 4)
        and v.is_floating_point(),
        "MASK": lambda v: isinstance(v, torch.Tensor) and v.ndim == 3 and v.is_floating_point(),
        "AUDIO": lambda v: isinstance(v, Mapping) and v["waveform"].ndim == 3 and int(v["sample_rate"]) > 0,
    }  # fmt: skip
    check = checks.get(kind)
    return None if check is None or check(value) else f"{type(value).__name__} for {kind}"


def check_result(cls: type, output: Any) -> list[str]:
    """Problems of what a node's ``execute`` returned, measured against its outputs (RETURN_TYPES)."""
    from comfy_api.latest import io

    assert isinstance(output, io.NodeOutput), f"returns {type(output).__name__}, not a NodeOutput"
    if output.ui is not None:
        assert isinstance(output.ui, dict) and all(isinstance(v, list) for v in output.ui.values())
        json.dumps(output.ui)  # the frontend gets it as JSON
    result = tuple(output.args)
    problems = []
    if len(result) != len(cls.RETURN_TYPES):
        return [f"returns {len(result)} values for {len(cls.RETURN_TYPES)} outputs"]
    is_list = getattr(cls, "OUTPUT_IS_LIST", [False] * len(result))
    for kind, value, listed in zip(cls.RETURN_TYPES, result, is_list, strict=True):
        for item in value if listed else [value]:
            problem = _check_value(kind, item)
            if problem:
                problems.append(problem)
    return problems


def _model_info_call(tmp_path: Path) -> list[dict[str, Any]]:
    good = save_tensors(tmp_path / "m.safetensors", {"w": torch.ones(4, 3)}, "motion", {"d_model": 8})
    return [{"model": str(good)}]


def _samples() -> dict[str, Any]:
    from node_samples import sample

    return sample()


def _video(**extra: Any) -> list[dict[str, Any]]:
    s = _samples()
    return [{"images": s["images"], **extra}]


def _personalize_call(tmp_path: Path) -> list[dict[str, Any]]:
    """Two training steps from the tiny sample models on the demo person's footage, saved under ``tmp_path``."""
    from node_samples import demo_footage
    from StyleLipSync.nodes import host

    host.SAVE_ROOT = tmp_path
    return [{"models": _samples()["models"], "name": "person", "steps": 2, "minutes": 0.0, "training_seed": 0,
             "overwrite": False, **demo_footage()}]


SAMPLE_CALLS: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
    "StyleLipSyncModelInfo": _model_info_call,
    "StyleLipSyncLoadModels": lambda _: [__import__("node_samples").model_inputs()],
    "StyleLipSyncTrackFaces": lambda _: _video(fps=25.0, backend="torch", face_choice="largest",
                                               no_face="passthrough", max_gap_seconds=0.5),
    "StyleLipSyncAudioFeatures": lambda _: [
        {"models": _samples()["models"], "fps": 25.0, "num_frames": 0, "audio": _samples()["audio"]},
        {"models": _samples()["models"], "fps": 0.0, "num_frames": 0, "audio": _samples()["audio"],
         "images": _samples()["images"], "video_info": {"loaded_fps": 25.0}},
    ],
    "StyleLipSyncMatchLength": lambda _: [
        {"images": _samples()["images"], "audio": _samples()["audio"], "fps": 25.0, "policy": policy,
         "track": _samples()["track"]}
        for policy in ("trim_to_audio", "ping_pong")
    ],
    "StyleLipSyncStyleReference": lambda _: [
        {"models": _samples()["models"], "max_frames": 64, "reference_fps": 0.0, "video_track": _samples()["track"],
         "video_audio": _samples()["audio"]},
        {"models": _samples()["models"], "max_frames": 64, "reference_fps": 25.0,
         "reference_images": _samples()["images"], "reference_audio": _samples()["audio"]},
    ],
    "StyleLipSyncPredictMotion": lambda _: [
        {"models": _samples()["models"], "features": _samples()["features"], "style_strength": 1.0,
         "mouth_scale": 1.2, "close_on_silence": True, "style": _samples()["style"]},
        {"models": _samples()["models"], "features": _samples()["features"], "style_strength": 0.0,
         "mouth_scale": 1.0, "close_on_silence": False},
    ],
    "StyleLipSyncPreviewMotion": lambda _: [
        {k: _samples()[k] for k in ("models", "images", "track", "motion")}
    ],
    "StyleLipSyncRender": lambda _: [__import__("node_samples").render_kwargs()],
    "StyleLipSyncDemoMedia": lambda _: [{}],
    "StyleLipSyncPersonalize": _personalize_call,
    "StyleLipSyncLipSync": lambda _: [
        {"models": _samples()["models"], "images": _samples()["images"], "audio": _samples()["audio"], "fps": 25.0,
         "length_policy": "trim_to_audio", "style_strength": 1.0, "sampler": "ddim", "steps": 2, "seed": 1,
         "chunk_size": 8, "video_audio": _samples()["audio"]},
    ],
}  # fmt: skip
"""Node id -> inputs to run it with (small, real data). Every node needs one."""


def global_state() -> dict[str, Any]:
    """Process-wide settings a node must leave as it found them (ComfyUI and other packs share them)."""
    import logging
    import os
    import sys
    import tempfile
    import warnings

    import numpy as np

    return {
        "environ": dict(os.environ),
        "sys.path": list(sys.path),
        "tempdir": tempfile.tempdir,
        "cwd": os.getcwd(),
        "torch.default_dtype": torch.get_default_dtype(),
        "torch.num_threads": torch.get_num_threads(),
        "torch.grad_enabled": torch.is_grad_enabled(),
        "torch.deterministic": torch.are_deterministic_algorithms_enabled(),
        "torch.matmul_precision": torch.get_float32_matmul_precision(),
        "numpy.seterr": np.geterr(),
        "warnings.filters": len(warnings.filters),
        "logging.root": (logging.getLogger().level, len(logging.getLogger().handlers)),
    }


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_outputs_match_return_types(node_id, tmp_path):
    cls = NODE_CLASS_MAPPINGS[node_id]
    assert node_id in SAMPLE_CALLS, f"{node_id}: add a sample call to SAMPLE_CALLS"
    for kwargs in SAMPLE_CALLS[node_id](tmp_path):
        before = global_state()
        result = cls.execute(**kwargs)
        assert check_result(cls, result) == []
        after = global_state()
        assert {k: v for k, v in after.items() if before[k] != v} == {}, f"{node_id} changed global state"


# ---------------------------------------------------------------------------- pack-wide rules


def test_core_imports_itself_relatively():
    """Inside ComfyUI the core is ``<pack>.lipsync_core``; an absolute ``lipsync_core`` import breaks there."""
    offenders = []
    for path in sorted((ROOT / "lipsync_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("lipsync_core"):
                offenders.append(f"{path.relative_to(ROOT)}: from {node.module} import ...")
            if isinstance(node, ast.Import) and any(a.name.startswith("lipsync_core") for a in node.names):
                offenders.append(f"{path.relative_to(ROOT)}: import lipsync_core...")
    assert offenders == []


def test_nodes_use_comfyui_through_its_api_only():
    """At module level the nodes import ComfyUI's public API (comfy_api) and nothing else of it; any other host
    module is reached at run time through host.host_module, so the pack's maths run the same outside a host.
    And no module is imported by a name built at run time (the core is reached by relative imports)."""
    host_modules = {"comfy", "comfy_extras", "folder_paths", "server", "execution", "node_helpers", "comfy_execution"}
    offenders = []
    for path in sorted((ROOT / "nodes").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for node in ast.parse(text).body:  # top level only: imports inside functions are lazy by construction
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in host_modules | {"lipsync_core"}]
        if re.search(r"import_module\([^)]*(core|lipsync)", text):
            offenders.append(f"{path.name}: imports the core by name")
    assert offenders == []
    assert len(list((ROOT / "nodes").glob("*.py"))) <= 7, "the adapter layer stays a handful of files"


def test_example_workflows_exist_with_thumbnails():
    files = workflow_files()
    assert files, "no example workflow"
    for path in files:
        assert path.with_suffix(".jpg").is_file(), f"{path.name}: the template browser wants {path.stem}.jpg"


OPTIONAL_MODULES = (
    "mediapipe", "insightface", "onnxruntime", "transformers", "diffusers", "xformers", "cv2", "librosa",
    "soundfile", "scipy", "skimage", "espeakng_loader", "tqdm",
)  # fmt: skip
"""Everything but torch, numpy, safetensors and av (ComfyUI's own requirements): the pack must import without
any of them."""

_BLOCKED_IMPORT = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
import importlib.util, os, tempfile, torch
sys.path.append(sys.argv[2])  # ComfyUI's sources: comfy_api (and av, which ComfyUI itself requires)
import comfy_api.latest
sys.meta_path.insert(0, Block())
before = (dict(os.environ), list(sys.path), tempfile.tempdir, torch.get_num_threads(), torch.get_default_dtype())
spec = importlib.util.spec_from_file_location("StyleLipSync", "__init__.py", submodule_search_locations=["."])
pack = importlib.util.module_from_spec(spec)
sys.modules["StyleLipSync"] = pack
spec.loader.exec_module(pack)
after = (dict(os.environ), list(sys.path), tempfile.tempdir, torch.get_num_threads(), torch.get_default_dtype())
assert before == after, "importing the pack changed process-wide state"
from StyleLipSync.nodes import NODE_CLASS_MAPPINGS
print(sorted(NODE_CLASS_MAPPINGS))
"""


def test_pack_imports_without_optional_dependencies():
    """A missing optional package must never break ComfyUI's import of the pack (the node using it says so),
    and importing it leaves the environment, sys.path, temp dir and torch settings alone."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _BLOCKED_IMPORT, ",".join(OPTIONAL_MODULES), str(COMFY_SOURCE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(node_id in done.stdout for node_id in NODE_IDS)


def test_registry_metadata():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    comfy = config["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] == "StyleLipSync"
    assert comfy["Icon"].endswith("/web/icon.svg") and (ROOT / "web" / "icon.svg").is_file()
    assert comfy["requires-comfyui"] == ">=0.3.64"  # the oldest the tests pass on (its V3 API, tests/e2e)
    assert "web" not in comfy, "WEB_DIRECTORY already serves web/js; a second registration loads the script twice"
