"""The one attention function every attention layer of the pack calls.

Backends, in order of precedence:

1. an override installed with :func:`set_attention_override` (the ComfyUI nodes install
   ComfyUI's chosen attention here; this module never imports comfy);
2. xformers' memory-efficient attention, when xformers imports and the tensors are on CUDA;
3. ``torch.nn.functional.scaled_dot_product_attention`` (the default everywhere else).

When the caller needs the attention weights (stage 1 draws them), they are computed
explicitly (softmax in float32), because the fused kernels do not return them.

Tensor layout is ``[B, heads, L, d_head]`` throughout. ``attn_mask`` follows SDPA's
convention: a boolean mask (True = may attend) or an additive float mask, broadcastable to
``[B, heads, Lq, Lk]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

AttentionFn = Callable[..., torch.Tensor]

_override: AttentionFn | None = None
_xformers_ops = None
_xformers_checked = False


def _xformers():
    """xformers.ops if it imports, else None (checked once)."""
    global _xformers_ops, _xformers_checked
    if not _xformers_checked:
        _xformers_checked = True
        try:
            import xformers.ops as xops  # type: ignore[import-not-found]

            _xformers_ops = xops
        except Exception:  # noqa: BLE001 - any import failure means "not available"
            _xformers_ops = None
    return _xformers_ops


def set_attention_override(fn: AttentionFn | None) -> None:
    """Install ``fn(q, k, v, attn_mask=None) -> out`` (all ``[B, heads, L, d]``) for every layer; None removes it."""
    global _override
    _override = fn


def get_attention_override() -> AttentionFn | None:
    return _override


@contextmanager
def attention_override(fn: AttentionFn | None) -> Iterator[None]:
    """Use ``fn`` as the attention backend inside the ``with`` block, restoring the previous one after."""
    previous = _override
    set_attention_override(fn)
    try:
        yield
    finally:
        set_attention_override(previous)


def current_backend(device: torch.device | str | None = None) -> str:
    """Which backend :func:`attention` uses for tensors on ``device`` ("override", "xformers" or "sdpa")."""
    if _override is not None:
        return "override"
    dev = torch.device(device) if device is not None else None
    if (dev is None or dev.type == "cuda") and torch.cuda.is_available() and _xformers() is not None:
        return "xformers"
    return "sdpa"


def _as_additive(attn_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if attn_mask.dtype == torch.bool:
        zero = torch.zeros((), dtype=dtype, device=attn_mask.device)
        return torch.where(attn_mask, zero, torch.tensor(float("-inf"), dtype=dtype, device=attn_mask.device))
    return attn_mask.to(dtype)


def explicit_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d) + mask) v, returning the output and the weights [B, heads, Lq, Lk]."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if attn_mask is not None:
        scores = scores + _as_additive(attn_mask, scores.dtype)
    weights = torch.softmax(scores, dim=-1)
    out = torch.matmul(weights.to(v.dtype), v)
    return out, weights


def _xformers_attention(q, k, v, attn_mask):
    xops = _xformers()
    # xformers wants [B, L, heads, d]; a mask becomes an additive bias [B, heads, Lq, Lk].
    bias = None
    if attn_mask is not None:
        b, h, lq, lk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
        bias = _as_additive(attn_mask, q.dtype).expand(b, h, lq, lk)
        # xformers requires the bias' last dim to be aligned in memory; pad then slice.
        pad = (-lk) % 8
        if pad:
            bias = F.pad(bias, (0, pad))[..., :lk]
        else:
            bias = bias.contiguous()
    out = xops.memory_efficient_attention(
        q.transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous(), attn_bias=bias
    )
    return out.transpose(1, 2)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    need_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention over ``[B, heads, L, d_head]`` tensors.

    Returns ``out [B, heads, Lq, d_head]``, or ``(out, weights [B, heads, Lq, Lk])`` when
    ``need_weights`` (then the explicit path runs whatever the backend, so the weights are exact).
    """
    if need_weights:
        return explicit_attention(q, k, v, attn_mask)
    if _override is not None:
        return _override(q, k, v, attn_mask=attn_mask)
    if q.is_cuda and _xformers() is not None:
        return _xformers_attention(q, k, v, attn_mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


def heads_merged_adapter(fn: Callable[..., torch.Tensor]) -> AttentionFn:
    """Adapt a ComfyUI-style ``fn(q, k, v, heads, mask=None, skip_reshape=True)`` to this module's hook.

    ComfyUI's ``optimized_attention`` takes ``[B, heads, L, d]`` with ``skip_reshape=True`` and returns
    ``[B, L, heads*d]`` (or ``[B, heads, L, d]`` in versions that honour ``skip_output_reshape``).
    Boolean masks are passed as additive float masks, which every ComfyUI backend accepts.
    """

    def adapted(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None):
        b, heads, lq, d = q.shape
        mask = None if attn_mask is None else _as_additive(attn_mask, q.dtype)
        out = fn(q, k, v, heads, mask=mask, skip_reshape=True)
        if out.dim() == 3:
            out = out.view(b, lq, heads, d).transpose(1, 2)
        return out

    return adapted
