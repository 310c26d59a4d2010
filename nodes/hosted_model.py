"""Torch modules that ComfyUI's model management moves, offloads and frees like its own.

Inside ComfyUI a :class:`HostedModel` wraps the module in ``comfy.model_patcher.ModelPatcher``
(load device and offload device from ``comfy.model_management``); :meth:`HostedModel.ready` asks
model management to load it before each use, which may first offload other models, and ComfyUI
moves it back to the offload device when another node needs the memory. Outside ComfyUI it is a
plain module on a device of our choice.
"""

from __future__ import annotations

from typing import Any

import torch

from .comfy_host import comfy_module


class _Holder(torch.nn.Module):
    """Carries the attributes ModelPatcher sets on its model, so the wrapped module stays untouched."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner


def default_devices() -> tuple[torch.device, torch.device]:
    """(load device, offload device) as ComfyUI chooses them; (cuda or cpu, cpu) outside it."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device(), mm.unet_offload_device()
    load = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    return load, torch.device("cpu")


class HostedModel:
    """A module plus (inside ComfyUI) the ModelPatcher that lets model management own its placement."""

    def __init__(
        self,
        module: torch.nn.Module,
        name: str = "",
        load_device: torch.device | None = None,
        offload_device: torch.device | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        default_load, default_offload = default_devices()
        self.module = module.eval()
        self.name = name or type(module).__name__
        self.load_device = load_device or default_load
        self.offload_device = offload_device or default_offload
        self.config = dict(config or {})
        self.patcher = None
        model_patcher = comfy_module("comfy.model_patcher")
        if model_patcher is not None:
            self.module.to(self.offload_device)
            self.patcher = model_patcher.ModelPatcher(
                _Holder(self.module), load_device=self.load_device, offload_device=self.offload_device
            )

    def ready(self, memory_required: int = 0) -> torch.nn.Module:
        """The module on its load device, ready to run (call it before each chunk of work).

        Our modules are not built from comfy.ops, so ComfyUI cannot stream their weights in low-VRAM
        mode: the load is a full load, and other models are offloaded first if memory is short.
        """
        mm = comfy_module("comfy.model_management")
        if self.patcher is not None and mm is not None:
            mm.load_models_gpu([self.patcher], memory_required=memory_required, force_full_load=True)
        else:
            self.module.to(self.load_device)
        return self.module

    @property
    def device(self) -> torch.device:
        """Where the module's weights are now."""
        for tensor in self.module.parameters():
            return tensor.device
        for tensor in self.module.buffers():
            return tensor.device
        return self.load_device

    def is_loaded(self) -> bool:
        """True when ComfyUI lists this model among its loaded models (always True outside ComfyUI)."""
        mm = comfy_module("comfy.model_management")
        if self.patcher is None or mm is None:
            return True
        return any(m is self.patcher for m in mm.loaded_models())

    def size_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.module.state_dict().values())
