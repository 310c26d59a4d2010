"""Small building blocks shared by the two models (all attention goes through attention.attention)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .attention import attention


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query / key / value input widths.

    Keys and values may come from two *different* sequences of the same length (the paper's
    stage-1 cross-attention: keys from reference audio, values from reference lips).
    """

    def __init__(
        self,
        query_dim: int,
        num_heads: int,
        key_dim: int | None = None,
        value_dim: int | None = None,
        head_dim: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        head_dim = head_dim or query_dim // num_heads
        inner = head_dim * num_heads
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(key_dim or query_dim, inner, bias=bias)
        self.to_v = nn.Linear(value_dim or query_dim, inner, bias=bias)
        self.to_out = nn.Linear(inner, query_dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, H*dh] -> [B, H, L, dh]."""
        b, length, _ = x.shape
        return x.view(b, length, self.num_heads, self.head_dim).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, H, L, dh] -> [B, L, H*dh]."""
        b, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(b, length, self.num_heads * self.head_dim)

    def project_kv(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split_heads(self.to_k(keys)), self.split_heads(self.to_v(values))

    def forward(
        self,
        x: torch.Tensor,
        keys: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        keys = x if keys is None else keys
        values = keys if values is None else values
        q = self.split_heads(self.to_q(x))
        k, v = self.project_kv(keys, values)
        out = attention(q, k, v, attn_mask=attn_mask)
        return self.to_out(self.merge_heads(out))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder block (self-attention + feed-forward, residual adds)."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), attn_mask=attn_mask))
        return x + self.dropout(self.ff(self.norm2(x)))


class TransformerEncoder(nn.Module):
    def __init__(self, dim: int, num_heads: int, ff_dim: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList([EncoderBlock(dim, num_heads, ff_dim, dropout) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, n, d]; padding_mask [B, n] with True where a frame is padding."""
        attn_mask = None if padding_mask is None else (~padding_mask)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, attn_mask)
        return self.norm(x)


def sinusoidal_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The usual sin/cos position table [length, dim] (works for any reference length n)."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freqs = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(position * freqs)
    table[:, 1::2] = torch.cos(position * freqs[: dim // 2])
    return table.to(dtype)
