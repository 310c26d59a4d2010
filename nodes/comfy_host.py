"""Where the pack meets ComfyUI: lazy access to its modules and the `stylelipsync` models folder.

Nothing here imports comfy at module level, so ``import nodes`` works in plain pytest and in a
ComfyUI of any supported version; every helper degrades to a plain-Python behaviour outside it.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

from ._core import LipSyncInputError

MODEL_FOLDER = "stylelipsync"
MODEL_EXTENSIONS = frozenset({".safetensors"})
CATEGORY = "StyleLipSync"
NODE_PREFIX = "StyleLipSync"
TYPE_PREFIX = "STYLELIPSYNC_"


def comfy_module(name: str) -> ModuleType | None:
    """The ComfyUI module ``name`` (e.g. "comfy.model_management"), or None outside ComfyUI."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def in_comfyui() -> bool:
    """True when ComfyUI's model management and folder registry are importable (we run inside a host)."""
    return comfy_module("folder_paths") is not None and comfy_module("comfy.model_management") is not None


def register_model_folder() -> bool:
    """Register ``models/stylelipsync`` (safetensors only) with folder_paths; False outside ComfyUI.

    An ``extra_model_paths.yaml`` entry named ``stylelipsync`` is read by ComfyUI before custom nodes
    load and registers the name with no extension filter; its paths are kept (first) and ours added.
    """
    folder_paths = comfy_module("folder_paths")
    if folder_paths is None:
        return False
    default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    registry = folder_paths.folder_names_and_paths
    if MODEL_FOLDER in registry:
        paths = list(registry[MODEL_FOLDER][0])
        if default not in paths:
            paths.append(default)
    else:
        paths = [default]
    registry[MODEL_FOLDER] = (paths, set(MODEL_EXTENSIONS))
    cache = getattr(folder_paths, "filename_list_cache", None)
    if isinstance(cache, dict):
        cache.pop(MODEL_FOLDER, None)
    return True


def model_folder_paths() -> list[str]:
    """The folders searched for model files (empty outside ComfyUI)."""
    folder_paths = comfy_module("folder_paths")
    if folder_paths is None or MODEL_FOLDER not in folder_paths.folder_names_and_paths:
        return []
    return folder_paths.get_folder_paths(MODEL_FOLDER)


def model_filenames() -> list[str]:
    """Model files a user can pick in a combo (relative names, sorted); empty outside ComfyUI."""
    folder_paths = comfy_module("folder_paths")
    if folder_paths is None or MODEL_FOLDER not in folder_paths.folder_names_and_paths:
        return []
    try:
        return list(folder_paths.get_filename_list(MODEL_FOLDER))
    except OSError:  # a folder ComfyUI listed earlier was removed since; its cache trips over it
        getattr(folder_paths, "filename_list_cache", {}).pop(MODEL_FOLDER, None)
        return list(folder_paths.get_filename_list(MODEL_FOLDER))


def resolve_model_path(name: str, input_name: str = "model") -> Path:
    """The file behind a combo value; outside ComfyUI (scripts, tests) ``name`` is a plain path."""
    folder_paths = comfy_module("folder_paths")
    if folder_paths is not None and MODEL_FOLDER in folder_paths.folder_names_and_paths:
        full = folder_paths.get_full_path(MODEL_FOLDER, name)
        if full is not None:
            return Path(full)
        folders = ", ".join(model_folder_paths()) or "models/stylelipsync"
        raise LipSyncInputError(f"{input_name}: '{name}' is not in the models folder ({folders}); copy it there.")
    path = Path(name)
    if not path.is_file():
        raise LipSyncInputError(f"{input_name}: no such file '{name}'; pick a file from the list or give a full path.")
    return path
