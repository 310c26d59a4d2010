"""The shared attention function: backends, explicit weights, masks and the ComfyUI hook."""

import math

import pytest
import torch

from lipsync_core.models.attention import (
    attention,
    attention_override,
    current_backend,
    get_attention_override,
    set_attention_override,
)


def _qkv(b=2, h=3, lq=5, lk=7, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h, lq, d, generator=g),
        torch.randn(b, h, lk, d, generator=g),
        torch.randn(b, h, lk, d, generator=g),
    )


def _naive(q, k, v, mask=None):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    w = scores.softmax(-1)
    return w @ v, w


def test_default_backend_matches_naive_and_weights_sum_to_one():
    q, k, v = _qkv()
    out = attention(q, k, v)
    ref, ref_w = _naive(q, k, v)
    assert out.shape == (2, 3, 5, 8)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    out2, w = attention(q, k, v, need_weights=True)
    torch.testing.assert_close(out2, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 5))
    assert current_backend("cpu") == "sdpa"


def test_boolean_and_additive_masks_agree_and_masked_keys_get_zero_weight():
    q, k, v = _qkv()
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[0, ..., 4:] = False
    ref, _ = _naive(q, k, v, mask)
    torch.testing.assert_close(attention(q, k, v, attn_mask=mask), ref, atol=1e-5, rtol=1e-5)
    additive = torch.zeros(2, 1, 1, 7).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(attention(q, k, v, attn_mask=additive), ref, atol=1e-5, rtol=1e-5)
    _, w = attention(q, k, v, attn_mask=mask, need_weights=True)
    assert torch.all(w[0, ..., 4:] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 5))


def test_override_hook_is_used_and_restored():
    q, k, v = _qkv()
    calls = []

    def fake_comfy_attention(q, k, v, attn_mask=None):
        calls.append(q.shape)
        return _naive(q, k, v)[0] * 2.0

    assert get_attention_override() is None
    with attention_override(fake_comfy_attention):
        assert current_backend() == "override"
        out = attention(q, k, v)
        # Explicit weights are always exact, whatever the backend.
        _, w = attention(q, k, v, need_weights=True)
    assert calls == [q.shape]
    torch.testing.assert_close(out, 2.0 * _naive(q, k, v)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 5))
    assert get_attention_override() is None and current_backend("cpu") == "sdpa"
    set_attention_override(fake_comfy_attention)
    try:
        assert current_backend() == "override"
    finally:
        set_attention_override(None)


def test_override_is_restored_after_an_error():
    with pytest.raises(RuntimeError):
        with attention_override(lambda q, k, v, attn_mask=None: q):
            raise RuntimeError("boom")
    assert get_attention_override() is None


def test_comfy_style_adapter_reshapes_and_converts_masks():
    from lipsync_core.models.attention import heads_merged_adapter

    seen = {}

    def comfy_like(q, k, v, heads, mask=None, skip_reshape=False):
        assert skip_reshape
        seen["mask_dtype"] = None if mask is None else mask.dtype
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, h, length, d = out.shape
        return out.transpose(1, 2).reshape(b, length, h * d)  # ComfyUI's merged-heads output

    q, k, v = _qkv()
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., :3] = False
    with attention_override(heads_merged_adapter(comfy_like)):
        out = attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, _naive(q, k, v, mask)[0], atol=1e-5, rtol=1e-5)
    assert seen["mask_dtype"] == torch.float32


def test_xformers_layout_and_bias_handling(monkeypatch):
    """The CUDA/xformers path cannot run here; check its layout and mask handling with a stand-in kernel."""
    import types

    import lipsync_core.models.attention as attn_mod

    def memory_efficient_attention(q, k, v, attn_bias=None):  # xformers layout: [B, L, heads, d]
        assert q.is_contiguous() and attn_bias.shape == (2, 3, 5, 7)
        out = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_bias
        )
        return out.transpose(1, 2)

    monkeypatch.setattr(
        attn_mod, "_xformers_ops", types.SimpleNamespace(memory_efficient_attention=memory_efficient_attention)
    )
    monkeypatch.setattr(attn_mod, "_xformers_checked", True)
    q, k, v = _qkv()
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[0, ..., 5:] = False
    out = attn_mod._xformers_attention(q, k, v, mask)
    torch.testing.assert_close(out, _naive(q, k, v, mask)[0], atol=1e-5, rtol=1e-5)
