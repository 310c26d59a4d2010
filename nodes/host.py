"""Where the pack meets ComfyUI: its modules, the ``stylelipsync`` models folder, model management,
progress and Cancel, and the attention it chose.

ComfyUI's own modules are used only when the pack runs inside a host (the host loads its model
management before any custom node); in plain pytest or a script every helper falls back to plain
Python, so the nodes run the same maths there.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..lipsync_core.types import LipSyncInputError

CATEGORY = "StyleLipSync"
NODE_PREFIX = "StyleLipSync"
TYPE_PREFIX = "STYLELIPSYNC_"
MODEL_FOLDER = "stylelipsync"
MODEL_EXTENSIONS = frozenset({".safetensors"})
HOST_MARKER = "comfy.model_management"  # loaded by every ComfyUI before it imports custom nodes

AttentionFn = Callable[..., torch.Tensor]


def in_comfyui() -> bool:
    """True when the pack runs inside a ComfyUI host."""
    return HOST_MARKER in sys.modules


def host_module(name: str) -> ModuleType | None:
    """The host's module ``name`` (e.g. "comfy.utils"), or None outside ComfyUI or when it lacks it."""
    if not in_comfyui():
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# ----------------------------------------------------------------------------- the models folder


def register_model_folder() -> bool:
    """Register ``models/stylelipsync`` (safetensors only) with folder_paths; False outside ComfyUI.

    An ``extra_model_paths.yaml`` entry named ``stylelipsync`` is read by ComfyUI before custom nodes
    load and registers the name with no extension filter; its paths are kept (first) and ours added.
    """
    folder_paths = host_module("folder_paths")
    if folder_paths is None:
        return False
    default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    registry = folder_paths.folder_names_and_paths
    paths = list(registry[MODEL_FOLDER][0]) if MODEL_FOLDER in registry else []
    if default not in paths:
        paths.append(default)
    registry[MODEL_FOLDER] = (paths, set(MODEL_EXTENSIONS))
    cache = getattr(folder_paths, "filename_list_cache", None)
    if isinstance(cache, dict):
        cache.pop(MODEL_FOLDER, None)
    return True


def _registered_folder_paths() -> ModuleType | None:
    folder_paths = host_module("folder_paths")
    if folder_paths is None or MODEL_FOLDER not in folder_paths.folder_names_and_paths:
        return None
    return folder_paths


def model_folder_paths() -> list[str]:
    """The folders searched for model files (empty outside ComfyUI)."""
    folder_paths = _registered_folder_paths()
    return folder_paths.get_folder_paths(MODEL_FOLDER) if folder_paths is not None else []


def model_filenames() -> list[str]:
    """Model files a user can pick in a combo (relative names, sorted); empty outside ComfyUI."""
    folder_paths = _registered_folder_paths()
    if folder_paths is None:
        return []
    try:
        return list(folder_paths.get_filename_list(MODEL_FOLDER))
    except OSError:  # a folder ComfyUI listed earlier was removed since; its cache trips over it
        getattr(folder_paths, "filename_list_cache", {}).pop(MODEL_FOLDER, None)
        return list(folder_paths.get_filename_list(MODEL_FOLDER))


def resolve_model_path(name: str, input_name: str = "model") -> Path:
    """The file behind a combo value; outside ComfyUI (scripts, tests) ``name`` is a plain path."""
    folder_paths = _registered_folder_paths()
    if folder_paths is not None:
        full = folder_paths.get_full_path(MODEL_FOLDER, name)
        if full is not None:
            return Path(full)
        path = Path(name)  # a full path inside a models folder (what Personalize hands on): ComfyUI's lookup
        if path.is_absolute() and path.is_file():  # takes names relative to the folders only
            inside = path.resolve()
            if any(inside.is_relative_to(Path(folder).resolve()) for folder in model_folder_paths()):
                return path
        folders = ", ".join(model_folder_paths()) or "models/stylelipsync"
        raise LipSyncInputError(f"{input_name}: '{name}' is not in the models folder ({folders}); copy it there.")
    path = Path(name)
    if not path.is_file():
        raise LipSyncInputError(f"{input_name}: no such file '{name}'; pick a file from the list or give a full path.")
    return path


SAVE_ROOT: Path | None = None
"""Where models made by a node go outside ComfyUI (scripts, tests); inside it, the first models/stylelipsync."""


def models_save_folder() -> Path:
    """The folder new model folders are written into: ComfyUI's first ``stylelipsync`` models folder."""
    folders = model_folder_paths()
    if folders:
        return Path(folders[0])
    if SAVE_ROOT is None:
        raise LipSyncInputError("models folder: there is no models/stylelipsync outside ComfyUI; use "
                                "`python -m lipsync_core personalize` from the command line.")
    return SAVE_ROOT


# ----------------------------------------------------------------------------- progress and Cancel


def check_interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException if the user pressed Cancel (no-op outside ComfyUI).

    Called between chunks and denoising steps: a cancelled job stops within one step.
    """
    mm = host_module("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


class Progress:
    """A ``comfy.utils.ProgressBar`` that checks for Cancel at every update (silent outside ComfyUI)."""

    def __init__(self, total: int, node_id: str | None = None) -> None:
        self.total = max(int(total), 1)
        self.current = 0
        utils = host_module("comfy.utils")
        self._bar = utils.ProgressBar(self.total, node_id=node_id) if utils is not None else None

    def set(self, value: int, total: int | None = None) -> None:
        """Jump to ``value`` (of ``total`` if it changed), then honour a pending Cancel."""
        if total is not None:
            self.total = max(int(total), 1)
        self.current = min(int(value), self.total)
        if self._bar is not None:
            self._bar.update_absolute(self.current, self.total)
        check_interrupted()


# ----------------------------------------------------------------------------- attention


def _additive_mask(mask: torch.Tensor, shape: tuple[int, int, int, int], dtype: torch.dtype) -> torch.Tensor:
    """An additive float mask broadcast to [B, heads, Lq, Lk], as every ComfyUI backend accepts it."""
    if mask.dtype == torch.bool:
        neg = torch.tensor(float("-inf"), dtype=dtype, device=mask.device)
        mask = torch.where(mask, torch.zeros((), dtype=dtype, device=mask.device), neg)
    else:
        mask = mask.to(dtype)
    return torch.broadcast_to(mask, shape)


def adapt_comfy_attention(comfy_fn: AttentionFn) -> AttentionFn:
    """ComfyUI's ``fn(q, k, v, heads, mask=..., skip_reshape=True, skip_output_reshape=True)`` (additive mask)
    as the ``fn(q, k, v, attn_mask=None)`` on [B, heads, L, d] tensors that lipsync_core.models.attention calls."""

    def comfy_attention(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, heads, lq, d = q.shape
        mask = None if attn_mask is None else _additive_mask(attn_mask, (b, heads, lq, k.shape[2]), q.dtype)
        out = comfy_fn(q, k, v, heads, mask=mask, skip_reshape=True, skip_output_reshape=True)
        if out.ndim == 3:  # some backends ignore skip_output_reshape on some paths: [B, Lq, heads*d]
            out = out.reshape(b, lq, heads, d).transpose(1, 2)
        return out

    comfy_attention.comfy_backend = getattr(comfy_fn, "__name__", repr(comfy_fn))  # type: ignore[attr-defined]
    return comfy_attention


def comfy_chosen_attention() -> AttentionFn | None:
    """ComfyUI's globally chosen attention (read at call time, so launch flags are honoured), or None."""
    module = host_module("comfy.ldm.modules.attention")
    if module is None:
        return None
    fn = getattr(module, "optimized_attention_masked", None) or getattr(module, "optimized_attention", None)
    return adapt_comfy_attention(fn) if fn is not None else None


@contextmanager
def comfy_attention_installed() -> Iterator[str]:
    """Our models run with ComfyUI's attention inside the block (the previous backend is restored after).

    Yields the backend's name ("sdpa-default" outside ComfyUI).
    """
    fn = comfy_chosen_attention()
    if fn is None:
        yield "sdpa-default"
        return
    from ..lipsync_core.models.attention import attention_override

    with attention_override(fn):
        yield fn.comfy_backend  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- model management


class _Holder(torch.nn.Module):
    """Carries the attributes ModelPatcher sets on its model, so the wrapped module stays untouched."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner


def default_devices() -> tuple[torch.device, torch.device]:
    """(load device, offload device) as ComfyUI chooses them; (cuda or cpu, cpu) outside it."""
    mm = host_module("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device(), mm.unet_offload_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu"), torch.device("cpu")


class HostedModel:
    """A module plus (inside ComfyUI) the ModelPatcher that lets model management move, offload and free it
    like its own models. Outside ComfyUI it is a plain module on a device of our choice."""

    def __init__(self, module: torch.nn.Module, name: str = "", load_device: torch.device | None = None,
                 offload_device: torch.device | None = None, config: dict[str, Any] | None = None) -> None:
        default_load, default_offload = default_devices()
        self.module = module.eval()
        self.name = name or type(module).__name__
        self.load_device = load_device or default_load
        self.offload_device = offload_device or default_offload
        self.config = dict(config or {})
        self.patcher = None
        model_patcher = host_module("comfy.model_patcher")
        if model_patcher is not None:
            self.module.to(self.offload_device)
            self.patcher = model_patcher.ModelPatcher(
                _Holder(self.module), load_device=self.load_device, offload_device=self.offload_device
            )

    def ready(self, memory_required: int = 0) -> torch.nn.Module:
        """The module on its load device, ready to run (call it before each chunk of work)."""
        return ready_all([self], memory_required)[0]

    @property
    def device(self) -> torch.device:
        """Where the module's weights are now."""
        for tensor in [*self.module.parameters(), *self.module.buffers()]:
            return tensor.device
        return self.load_device

    def is_loaded(self) -> bool:
        """True when ComfyUI lists this model among its loaded models (always True outside ComfyUI)."""
        mm = host_module("comfy.model_management")
        if self.patcher is None or mm is None:
            return True
        return any(m is self.patcher for m in mm.loaded_models())

    def size_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.module.state_dict().values())


def make_room(bytes_needed: int, device: torch.device) -> None:
    """Ask ComfyUI's model management to free ``bytes_needed`` on ``device`` (offloading other models) before
    work it cannot see, such as training; a no-op outside ComfyUI."""
    mm = host_module("comfy.model_management")
    if mm is not None:
        mm.free_memory(bytes_needed, device)


def release_cache() -> None:
    """Return the allocator's cached blocks after a large piece of work (ComfyUI's own call when inside it)."""
    mm = host_module("comfy.model_management")
    if mm is not None:
        mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


def ready_all(hosted: list[HostedModel], memory_required: int = 0) -> list[torch.nn.Module]:
    """Load several models for one job in a single request, so loading one never offloads another.

    Our modules are not built from comfy.ops, so ComfyUI cannot stream their weights in low-VRAM mode:
    the load is a full load, and other models are offloaded first if memory is short.
    """
    mm = host_module("comfy.model_management")
    patchers = [h.patcher for h in hosted if h.patcher is not None]
    if mm is not None and patchers:
        mm.load_models_gpu(patchers, memory_required=memory_required, force_full_load=True)
    for h in hosted:
        if h.patcher is None:
            h.module.to(h.load_device)
    return [h.module for h in hosted]
