"""Loading a StyleLipSync weights file into a managed model, once, for every node that needs it.

The loader nodes of the pack all do the same three things: find the file (models folder or path),
read it with ``lipsync_core.weights.load_tensors`` (kind and version checked, nothing unpickled),
build the module from the stored config, and hand ComfyUI a :class:`HostedModel`. Through
``MODEL_CACHE`` the file is read once per version, however many nodes or runs use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ._core import weights
from .comfy_host import resolve_model_path
from .hosted_model import HostedModel
from .model_cache import MODEL_CACHE, ModelCache

BuildFn = Callable[[Any], torch.nn.Module]
"""``build(weights_file) -> module`` with its state loaded (weights_file: lipsync_core.weights.WeightsFile)."""


def load_hosted_model(
    model: str | os.PathLike,
    kind: str,
    build: BuildFn,
    input_name: str = "model",
    max_version: int = 1,
    cache: ModelCache = MODEL_CACHE,
) -> HostedModel:
    """The HostedModel of a weights file of ``kind``, loaded at most once per file version.

    ``model`` is a models-folder name inside ComfyUI, or a path. Errors are one-line
    LipSyncInputErrors naming ``input_name`` (missing file) or the file (wrong kind, broken file).
    """
    path = resolve_model_path(str(model), input_name)

    def loader(resolved: Path) -> HostedModel:
        loaded = weights.load_tensors(resolved, expected_kind=kind, max_version=max_version)
        module = build(loaded)
        return HostedModel(module, name=f"{kind}:{resolved.name}", config=loaded.config)

    return cache.get(path, loader, kind=kind)
