"""Check a ComfyUI workflow in the UI format (what the frontend saves) against node definitions.

The definitions are an ``/object_info``-like dict: :func:`pack_object_info` builds ours from the
classes (no host needed); a live host's ``/object_info`` gives everything, core and VideoHelperSuite
included (tests/e2e). :func:`check_workflow` returns a list of problems (empty = valid):

- structure: unique node ids, every link joins existing nodes and slots, and both ends record it;
- node names exist (offline: ours, or one of :data:`HOST_NODE_NAMES`, see there);
- widget values: count, type, range, combo choices (ours offline, all with a host);
- link types: the origin's output type fits the target's input type.

Usable as a script too: ``python tests/workflow_check.py example_workflows/*.json``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_DIRS = ("example_workflows",)
"""Where the pack keeps its example workflows (ComfyUI's template browser convention: see docs/COMFYUI.md)."""

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
FRONTEND_ONLY_NODES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
"""Nodes that exist only in the frontend: never in /object_info, never sent to the server."""

# Non-StyleLipSync nodes our example workflows may use. Without a host (plain pytest) these names
# are accepted but their widgets and sockets are not checked (that needs the host's /object_info;
# tests/e2e checks them fully). Any other foreign name is an error offline, so a typo cannot hide.
HOST_NODE_NAMES = frozenset(
    {
        # ComfyUI core, nodes.py
        "LoadImage", "PreviewImage", "SaveImage", "VAELoader", "VAEDecode", "VAEEncode", "ImageScale",
        # ComfyUI core, comfy_extras/nodes_audio.py
        "LoadAudio", "SaveAudio", "PreviewAudio",
        # ComfyUI core, comfy_extras/nodes_video.py
        "LoadVideo", "GetVideoComponents", "CreateVideo", "SaveVideo",
        # ComfyUI core, comfy_extras/nodes_preview_any.py and nodes_primitive.py
        "PreviewAny", "PrimitiveFloat", "PrimitiveInt", "PrimitiveString",
        # ComfyUI-VideoHelperSuite (Kosinkadink)
        "VHS_LoadVideo", "VHS_LoadVideoPath", "VHS_LoadVideoFFmpeg", "VHS_LoadVideoFFmpegPath",
        "VHS_VideoCombine", "VHS_VideoInfo", "VHS_VideoInfoSource", "VHS_VideoInfoLoaded",
        "VHS_LoadAudio", "VHS_LoadAudioUpload",
    }
)  # fmt: skip


# ---------------------------------------------------------------------------- node definitions


def pack_object_info() -> dict[str, dict[str, Any]]:
    """``/object_info`` of this pack's nodes as ComfyUI's server builds it (V3: ``GET_NODE_INFO_V1``), no host."""
    from pack_loader import load_pack

    load_pack()
    from StyleLipSync.nodes import NODE_CLASS_MAPPINGS

    return {node_id: cls.GET_NODE_INFO_V1() for node_id, cls in NODE_CLASS_MAPPINGS.items()}


def ordered_inputs(info: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(name, spec) of required then optional inputs, in the order the node declares them."""
    out: list[tuple[str, Any]] = []
    order = info.get("input_order") or {}
    for section in ("required", "optional"):
        specs = (info.get("input") or {}).get(section) or {}
        for name in order.get(section) or list(specs):
            if name in specs:
                out.append((name, specs[name]))
    return out


def spec_type(spec: Any) -> str:
    """The socket type of an input spec: "COMBO" for a list of choices."""
    kind = spec[0] if isinstance(spec, list | tuple) and spec else spec
    if isinstance(kind, list | tuple):
        return "COMBO"
    return str(kind)


def spec_options(spec: Any) -> dict[str, Any]:
    if isinstance(spec, list | tuple) and len(spec) > 1 and isinstance(spec[1], Mapping):
        return dict(spec[1])
    return {}


def combo_choices(spec: Any) -> list[Any] | None:
    kind = spec[0] if isinstance(spec, list | tuple) and spec else spec
    if isinstance(kind, list | tuple):
        return list(kind)
    if kind == "COMBO":
        return list(spec_options(spec).get("options") or [])
    return None


def is_widget(spec: Any) -> bool:
    """True when the frontend draws this input as a widget (so it has a slot in widgets_values)."""
    return spec_type(spec) in WIDGET_TYPES and not spec_options(spec).get("forceInput", False)


def has_control_widget(name: str, spec: Any) -> bool:
    """The frontend adds a "control after generate" value after this widget (its migrateWidgetsValues rule)."""
    return bool(spec_options(spec).get("control_after_generate")) or name in ("seed", "noise_seed")


def widget_names(info: Mapping[str, Any]) -> list[str | None]:
    """The widgets_values layout of a node: input names, None for a control-after-generate slot."""
    names: list[str | None] = []
    for name, spec in ordered_inputs(info):
        if is_widget(spec):
            names.append(name)
            if has_control_widget(name, spec):
                names.append(None)
    return names


def types_fit(output_type: str, input_type: str) -> bool:
    """ComfyUI's link rule: equal, "*" on either side, or overlapping comma-separated unions."""
    if output_type == input_type or "*" in (output_type, input_type):
        return True
    return bool(set(output_type.split(",")) & set(input_type.split(",")))


# ---------------------------------------------------------------------------- checks


def check_widget_value(name: str, spec: Any, value: Any) -> str | None:
    """A problem with one widget value, or None."""
    kind = spec_type(spec)
    opts = spec_options(spec)
    if kind == "COMBO":
        choices = combo_choices(spec) or []
        if value in choices:
            return None
        folder = opts.get("stylelipsync_folder")
        if folder and isinstance(value, str) and value.endswith(".safetensors"):
            return None  # a model file the user is expected to have in models/<folder>
        return f"'{name}': {value!r} is not one of {choices[:8]}"
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"'{name}': {value!r} is not a boolean"
    if kind == "STRING":
        return None if isinstance(value, str) else f"'{name}': {value!r} is not a string"
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"'{name}': {value!r} is not a number"
        if kind == "INT" and float(value) != int(value):
            return f"'{name}': {value!r} is not an integer"
        lo, hi = opts.get("min"), opts.get("max")
        if lo is not None and value < lo or hi is not None and value > hi:
            return f"'{name}': {value!r} is outside [{lo}, {hi}]"
    return None


def _links_by_id(workflow: Mapping[str, Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for link in workflow.get("links") or []:
        if isinstance(link, Mapping):  # the frontend's object form
            link = [link["id"], link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                    link.get("type", "*")]  # fmt: skip
        out[int(link[0])] = list(link)
    return out


def earlier_inputs() -> dict[str, frozenset[str]]:
    """Inputs of our nodes that workflows saved with an earlier version may still link, which the node now
    accepts and ignores (node id -> names; each node class says which, as ``EARLIER_INPUTS``)."""
    from pack_loader import load_pack

    load_pack()
    from StyleLipSync.nodes import NODE_CLASS_MAPPINGS

    return {node_id: cls.EARLIER_INPUTS for node_id, cls in NODE_CLASS_MAPPINGS.items()
            if hasattr(cls, "EARLIER_INPUTS")}  # fmt: skip


def check_workflow(
    workflow: Mapping[str, Any], object_info: Mapping[str, Any], host_names: Iterable[str] = HOST_NODE_NAMES,
    earlier: Mapping[str, Iterable[str]] | None = None,
) -> list[str]:
    """Problems of a UI-format workflow; empty when it is valid against ``object_info``.

    A node type absent from ``object_info`` but listed in ``host_names`` is accepted unchecked
    (offline use); pass ``host_names=()`` with a host's full ``/object_info`` to check everything.
    ``earlier``: node type -> input names a node still accepts from workflows of an earlier version.
    """
    earlier = earlier or {}
    problems: list[str] = []
    host_names = frozenset(host_names)
    nodes = workflow.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        return ["workflow has no 'nodes' list: not a UI-format workflow (an API prompt?)"]
    by_id: dict[int, Mapping[str, Any]] = {}
    for node in nodes:
        nid = int(node["id"])
        if nid in by_id:
            problems.append(f"node id {nid} is used twice")
        by_id[nid] = node
    links = _links_by_id(workflow)

    for node in nodes:
        nid, ntype = int(node["id"]), node.get("type")
        where = f"node {nid} ({ntype})"
        info = object_info.get(ntype)
        if info is None:
            if ntype not in FRONTEND_ONLY_NODES and ntype not in host_names:
                problems.append(f"{where}: no such node type")
            continue
        # widgets
        values = node.get("widgets_values")
        names = widget_names(info)
        specs = dict(ordered_inputs(info))
        if isinstance(values, Mapping):
            pairs = [(n, values[n]) for n in names if n is not None and n in values]
            missing = [n for n in names if n is not None and n not in values]
            problems += [f"{where}: widget '{n}' has no value" for n in missing]
        else:
            values = list(values or [])
            if len(values) < len(names):
                problems.append(f"{where}: {len(values)} widget values for {len(names)} widgets")
            pairs = [(n, v) for n, v in zip(names, values, strict=False) if n is not None]
        for name, value in pairs:
            problem = check_widget_value(name, specs[name], value)
            if problem:
                problems.append(f"{where}: {problem}")
        # required sockets connected
        connected = {inp.get("name") for inp in node.get("inputs") or [] if inp.get("link") is not None}
        for name, spec in ((info.get("input") or {}).get("required") or {}).items():
            if not is_widget(spec) and name not in connected:
                problems.append(f"{where}: required input '{name}' is not connected")

    for link_id, (lid, origin, oslot, target, tslot, ltype) in links.items():
        where = f"link {lid}"
        if origin not in by_id or target not in by_id:
            problems.append(f"{where}: joins a node that does not exist ({origin} -> {target})")
            continue
        onode, tnode = by_id[origin], by_id[target]
        outs, ins = onode.get("outputs") or [], tnode.get("inputs") or []
        if oslot >= len(outs) or link_id not in (outs[oslot].get("links") or []):
            problems.append(f"{where}: output slot {oslot} of node {origin} does not record it")
        if tslot >= len(ins) or ins[tslot].get("link") != link_id:
            problems.append(f"{where}: input slot {tslot} of node {target} does not record it")
            continue
        oinfo, tinfo = object_info.get(onode.get("type")), object_info.get(tnode.get("type"))
        out_type = oinfo["output"][oslot] if oinfo and oslot < len(oinfo["output"]) else None
        in_name = ins[tslot].get("name")
        in_spec = dict(ordered_inputs(tinfo)).get(in_name) if tinfo else None
        if in_spec is None and in_name in earlier.get(tnode.get("type"), ()):
            continue
        if tinfo and in_spec is None and tnode.get("type") not in FRONTEND_ONLY_NODES:
            problems.append(f"{where}: node {target} ({tnode.get('type')}) has no input '{in_name}'")
            continue
        in_type = spec_type(in_spec) if in_spec is not None else None
        if out_type is not None and in_type is not None and not types_fit(out_type, in_type):
            if not (in_type == "COMBO" and out_type == "COMBO"):
                problems.append(f"{where}: {out_type} output into {in_type} input '{in_name}' of node {target}")
        if out_type is not None and ltype not in (None, "*") and not types_fit(out_type, str(ltype)):
            problems.append(f"{where}: says type {ltype} but node {origin} slot {oslot} gives {out_type}")
    return problems


EARLIER_WORKFLOWS = ROOT / "tests" / "fixtures" / "workflows_0.1"
"""The example workflows as version 0.1 shipped them: they must keep loading and running (tests, tests/e2e)."""


def earlier_workflow_files() -> list[Path]:
    return sorted(EARLIER_WORKFLOWS.glob("*.json"))


def workflow_files(root: Path = ROOT) -> list[Path]:
    """Every example workflow of the pack."""
    return sorted(p for d in WORKFLOW_DIRS for p in (root / d).glob("*.json"))


def main(argv: list[str]) -> int:
    info = pack_object_info()
    status = 0
    for arg in argv or [str(p) for p in workflow_files()]:
        problems = check_workflow(json.loads(Path(arg).read_text(encoding="utf-8")), info)
        print(f"{arg}: {'OK' if not problems else ''}")
        for problem in problems:
            print(f"  {problem}")
        status |= bool(problems)
    return status


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv[1:]))
