"""ComfyUI's chosen attention (sage, xformers, flash, pytorch, split, sub-quadratic) for our models.

``lipsync_core.models.attention`` calls ``fn(q, k, v, attn_mask=None)`` with ``[B, heads, L, d]``
tensors and an SDPA-style mask (bool: True may attend; or additive float) when an override is set.
ComfyUI's functions take ``(q, k, v, heads, mask=..., skip_reshape=True, skip_output_reshape=True)``
and expect an additive mask; :func:`adapt_comfy_attention` bridges the two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from ._core import optional_core_module
from .comfy_host import comfy_module

AttentionFn = Callable[..., torch.Tensor]


def _additive_mask(mask: torch.Tensor, shape: tuple[int, int, int, int], dtype: torch.dtype) -> torch.Tensor:
    """An additive float mask broadcast to [B, heads, Lq, Lk], as every ComfyUI backend accepts it."""
    if mask.dtype == torch.bool:
        neg = torch.tensor(float("-inf"), dtype=dtype, device=mask.device)
        mask = torch.where(mask, torch.zeros((), dtype=dtype, device=mask.device), neg)
    else:
        mask = mask.to(dtype)
    return torch.broadcast_to(mask, shape)


def adapt_comfy_attention(comfy_fn: AttentionFn) -> AttentionFn:
    """Wrap a ComfyUI attention function into the ``fn(q, k, v, attn_mask=None)`` our core expects."""

    def comfy_attention(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, heads, lq, d = q.shape
        mask = None
        if attn_mask is not None:
            mask = _additive_mask(attn_mask, (b, heads, lq, k.shape[2]), q.dtype)
        out = comfy_fn(q, k, v, heads, mask=mask, skip_reshape=True, skip_output_reshape=True)
        if out.ndim == 3:  # some backends ignore skip_output_reshape on some paths: [B, Lq, heads*d]
            out = out.reshape(b, lq, heads, d).transpose(1, 2)
        return out

    comfy_attention.comfy_backend = getattr(comfy_fn, "__name__", repr(comfy_fn))  # type: ignore[attr-defined]
    return comfy_attention


def comfy_chosen_attention() -> AttentionFn | None:
    """ComfyUI's globally chosen attention (read at call time, so launch flags are honoured), or None."""
    module = comfy_module("comfy.ldm.modules.attention")
    if module is None:
        return None
    fn = getattr(module, "optimized_attention_masked", None) or getattr(module, "optimized_attention", None)
    return adapt_comfy_attention(fn) if fn is not None else None


@contextmanager
def comfy_attention_installed() -> Iterator[str]:
    """Run our models with ComfyUI's attention inside the block; restores the previous backend after.

    Yields the backend's name ("sdpa-default" when not inside ComfyUI or when the core lacks the hook).
    """
    core = optional_core_module("models.attention")
    fn = comfy_chosen_attention()
    if core is None or fn is None or not hasattr(core, "set_attention_override"):
        yield "sdpa-default"
        return
    previous = core.get_attention_override() if hasattr(core, "get_attention_override") else None
    core.set_attention_override(fn)
    try:
        yield fn.comfy_backend  # type: ignore[attr-defined]
    finally:
        core.set_attention_override(previous)
