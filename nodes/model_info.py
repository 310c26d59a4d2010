"""StyleLipSyncModelInfo: what is in the models folder, and whether each file is whole and usable.

Reads only the safetensors headers (no tensor data), so it is instant even for large files, and
checks what a load would trip over later: not a StyleLipSync file, unknown format version,
unreadable config, or a truncated file (data shorter than the header says).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from ._core import weights
from .comfy_host import CATEGORY, MODEL_FOLDER, model_filenames, model_folder_paths, resolve_model_path
from .lipsync_models import DEMO_CHOICE, DEMO_FOLDER, MODEL_FILES
from .model_cache import MODEL_CACHE, file_key
from .ui_payload import TEXT_KEY

ALL_FILES = "(all files)"
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_MAX_HEADER = 100 * 1024 * 1024


def inspect_weights_file(path: str | os.PathLike) -> dict[str, Any]:
    """Header facts and problems of one safetensors file: kind, version, config, tensors, params, bytes."""
    path = Path(path)
    info: dict[str, Any] = {"file": path.name, "path": str(path), "problems": []}
    problems: list[str] = info["problems"]
    size = path.stat().st_size
    info["file_bytes"] = size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            problems.append("shorter than a safetensors header; re-copy it")
            return info
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, _MAX_HEADER):
            problems.append("header length is impossible: not a safetensors file, or truncated")
            return info
        try:
            header = json.loads(f.read(header_len))
        except ValueError:
            problems.append("header is not JSON: not a safetensors file")
            return info
    meta = header.pop("__metadata__", None) or {}
    params = 0
    data_end = 0
    dtypes: set[str] = set()
    for name, spec in header.items():
        try:
            shape, (start, end), dtype = spec["shape"], spec["data_offsets"], spec["dtype"]
        except (KeyError, TypeError, ValueError):
            problems.append(f"tensor '{name}' has a malformed header entry")
            continue
        count = 1
        for dim in shape:
            count *= int(dim)
        params += count
        data_end = max(data_end, int(end))
        dtypes.add(dtype)
        if dtype in _DTYPE_BYTES and int(end) - int(start) != count * _DTYPE_BYTES[dtype]:
            problems.append(f"tensor '{name}' size does not match its shape")
    info.update(tensors=len(header), parameters=params, dtypes=sorted(dtypes))
    if 8 + header_len + data_end > size:
        problems.append(f"truncated: {8 + header_len + data_end - size} bytes missing; re-copy it")
    kind = meta.get(weights.KIND_KEY)
    info["kind"] = kind
    if kind is None:
        problems.append("not a StyleLipSync weights file (no kind in its metadata)")
        return info
    try:
        info["format_version"] = int(meta.get(weights.VERSION_KEY, "0"))
        info["config"] = json.loads(meta.get(weights.CONFIG_KEY, "{}"))
        info["extra"] = json.loads(meta.get(weights.EXTRA_KEY, "{}"))
    except ValueError:
        problems.append("metadata is corrupted (config is not JSON)")
    return info


def _describe(info: dict[str, Any]) -> str:
    status = "OK" if not info["problems"] else "PROBLEM: " + "; ".join(info["problems"])
    name = f"{DEMO_CHOICE}: {info['file']}" if info.get("shipped") else info["file"]
    parts = [f"{name}: {status}"]
    if "kind" in info and info["kind"] is not None:
        parts.append(f"  kind {info['kind']} v{info.get('format_version', '?')}")
    if "parameters" in info:
        parts.append(
            f"  {info['tensors']} tensors, {info['parameters']:,} parameters ({'/'.join(info['dtypes']) or '-'}), "
            f"{info['file_bytes'] / 1e6:.2f} MB"
        )
    config = info.get("config")
    if isinstance(config, dict) and config:
        parts.append("  config: " + json.dumps(config, sort_keys=True)[:400])
    return "\n".join(parts)


class StyleLipSyncModelInfo:
    """Lists the StyleLipSync model files with their kind, config and integrity."""

    DESCRIPTION = (
        "Inspects StyleLipSync weights in models/stylelipsync (or any folder registered for 'stylelipsync' "
        "in extra_model_paths.yaml): kind, format version, stored config, parameter count, and whether the "
        "file is whole. Reads headers only."
    )
    CATEGORY = CATEGORY
    FUNCTION = "inspect"
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("report", "details_json")
    OUTPUT_TOOLTIPS = ("One readable paragraph per file.", "The same facts as JSON (a list, one object per file).")
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": (
                    [ALL_FILES, DEMO_CHOICE, *model_filenames()],
                    {
                        "default": ALL_FILES,
                        "tooltip": "One file of the models folder, the demo weights shipped with the pack, or all "
                        "of them (the demo weights first).",
                        "stylelipsync_folder": MODEL_FOLDER,
                    },
                ),
            }
        }

    @classmethod
    def _selected(cls, model: str) -> list[Path]:
        """The files behind a choice: the shipped demo weights (those present), folder files, or both."""
        demo = [path for path in (DEMO_FOLDER / name for name in MODEL_FILES.values()) if path.is_file()]
        if model == DEMO_CHOICE:
            return demo
        if model == ALL_FILES:
            return demo + [resolve_model_path(name) for name in model_filenames()]
        return [resolve_model_path(model)]

    @classmethod
    def IS_CHANGED(cls, model: str) -> str:
        """Re-run when a selected file is replaced or the folder's contents change."""
        try:
            return json.dumps([file_key(p) for p in cls._selected(model)])
        except Exception:  # noqa: BLE001 - validation reports the real problem
            return "unavailable"

    def inspect(self, model: str) -> dict[str, Any]:
        infos = [
            {**MODEL_CACHE.get(path, inspect_weights_file, kind="header"), "shipped": path.parent == DEMO_FOLDER}
            for path in self._selected(model)
        ]
        folders = ", ".join(model_folder_paths()) or "models/stylelipsync"
        if infos:
            report = "\n\n".join(_describe(info) for info in infos)
            if not any(not info["shipped"] for info in infos) and model == ALL_FILES:
                report += f"\n\nNo .safetensors files in {folders} (only the shipped demo weights)."
        elif model == DEMO_CHOICE:
            report = f"The demo weights are not installed (lipsync_core/assets/demo_models is empty); use {folders}."
        else:
            report = f"No .safetensors files in {folders}."
        details = json.dumps(infos, indent=1, sort_keys=True)
        return {"ui": {TEXT_KEY: [report]}, "result": (report, details)}


NODE_CLASS_MAPPINGS = {"StyleLipSyncModelInfo": StyleLipSyncModelInfo}
NODE_DISPLAY_NAME_MAPPINGS = {"StyleLipSyncModelInfo": "StyleLipSync Model Info"}
