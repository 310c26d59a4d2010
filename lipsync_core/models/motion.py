"""Stage 1: reference-guided lip-motion prediction (the paper's audio-aware style Transformer).

Reference audio a'_1..a'_n -> 1D temporal conv -> Transformer encoder -> keys.
Reference mouth params m'_1..m'_n -> a second Transformer encoder -> values.
Input audio window t-w..t+w -> 1D conv -> tokens -> N1 decoder blocks (self-attention,
cross-attention with Q = hidden states, K = reference audio, V = reference lips, feed-forward;
residual adds) -> middle token -> MLP -> 13 mouth params for frame t.

Variants (``reference_mode``), as ablated in the paper:
- ``audio_aware``: the method (keys from reference audio, values from reference lips);
- ``lip_only``: reference lip features are both keys and values;
- ``none``: no reference; a second self-attention replaces the cross-attention.

Without a reference (``ref_* = None``, or reference dropout in training) an ``audio_aware`` or
``lip_only`` model attends to a single learned null key/value token instead (docs/DECISIONS.md).

Batching: the decoder works on ``[G, M, 2w+1, d]``: G reference memories, M windows per memory.
Because attention is independent per query, the M windows of one memory are folded into the
query axis of one cross-attention call, so a whole clip (M = T frames) attends to its reference
in one matmul, without copying the reference T times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..types import NUM_MOUTH_PARAMS, FeatureSpec, LipSyncInputError
from .attention import attention
from .layers import FeedForward, MultiHeadAttention, TransformerEncoder, sinusoidal_positions

REFERENCE_MODES = ("audio_aware", "lip_only", "none")


@dataclass
class ReferenceMemory:
    """Encoded style reference, reusable for every window of a clip.

    keys / values: [G, n, d] (G = 1 broadcasts over any number of windows);
    padding_mask: [G, n] bool, True where a reference frame is padding (or None).
    """

    keys: torch.Tensor
    values: torch.Tensor
    padding_mask: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return int(self.keys.shape[1])


class DecoderBlock(nn.Module):
    """Self-attention, cross-attention (or a second self-attention), feed-forward; pre-norm residual adds."""

    def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float, cross: bool) -> None:
        super().__init__()
        self.cross = cross
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        # With cross=False this is the second self-attention of the "none" ablation.
        self.cross_attn = MultiHeadAttention(dim, num_heads)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory_kv: tuple[torch.Tensor, torch.Tensor] | None,
        memory_mask: torch.Tensor | None,
        need_weights: bool = False,
        only_index: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [G, M, L, d] -> ([G, M, L', d], cross-attention weights [G, H, M*L', n] or None).

        ``only_index`` keeps just that token from the last token-mixing step on (the last block
        only needs the middle token: every later operation is per token, so this is exact).
        """
        g, m, length, d = x.shape
        flat = x.reshape(g * m, length, d)
        h = self.norm1(flat)
        mix_here = self.cross and only_index is not None
        q_in = h[:, only_index : only_index + 1] if mix_here else h
        if mix_here:
            flat = flat[:, only_index : only_index + 1]
        flat = flat + self.dropout(self.self_attn(q_in, h, h))
        h = self.norm2(flat)
        weights = None
        if self.cross:
            attn = self.cross_attn
            lq = flat.shape[1]
            q = attn.split_heads(attn.to_q(h))  # [G*M, H, Lq, dh]
            q = q.view(g, m, attn.num_heads, lq, attn.head_dim).transpose(1, 2).reshape(g, attn.num_heads, m * lq, -1)
            k, v = memory_kv
            result = attention(q, k, v, attn_mask=memory_mask, need_weights=need_weights)
            out, weights = result if need_weights else (result, None)
            out = out.view(g, attn.num_heads, m, lq, attn.head_dim).permute(0, 2, 3, 1, 4)
            out = attn.to_out(out.reshape(g * m, lq, attn.num_heads * attn.head_dim))
        else:
            if only_index is not None:
                out = self.cross_attn(h[:, only_index : only_index + 1], h, h)
                flat = flat[:, only_index : only_index + 1]
            else:
                out = self.cross_attn(h)
        flat = flat + self.dropout(out)
        flat = flat + self.dropout(self.ff(self.norm3(flat)))
        return flat.view(g, m, flat.shape[1], d), weights


class LipMotionTransformer(ModelMixin, ConfigMixin):
    """Stage-1 model: audio window (+ style reference) -> 13 mouth params of the window's middle frame."""

    config_name = "motion_config.json"

    @register_to_config
    def __init__(
        self,
        audio_dim: int,
        num_params: int = NUM_MOUTH_PARAMS,
        d_model: int = 256,
        num_heads: int = 8,
        decoder_layers: int = 3,
        audio_encoder_layers: int = 2,
        lip_encoder_layers: int = 2,
        window: int = 5,
        reference_mode: str = "audio_aware",
        ff_dim: int = 1024,
        dropout: float = 0.1,
        reference_dropout: float = 0.2,
        conv_kernel: int = 3,
        vertex_loss_weight: float = 300.0,
        feature_spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if reference_mode not in REFERENCE_MODES:
            raise LipSyncInputError(f"reference_mode={reference_mode!r}: use one of {REFERENCE_MODES}.")
        if d_model % num_heads:
            raise LipSyncInputError(f"d_model={d_model} must be divisible by num_heads={num_heads}.")
        if conv_kernel % 2 == 0:
            raise LipSyncInputError(f"conv_kernel={conv_kernel} must be odd (centred temporal conv).")
        self.window_frames = 2 * window + 1
        self.window_conv = nn.Conv1d(audio_dim, d_model, conv_kernel, padding=conv_kernel // 2)
        self.window_positions = nn.Parameter(torch.randn(1, self.window_frames, d_model) * 0.02)
        self.input_dropout = nn.Dropout(dropout)
        uses_reference = reference_mode != "none"
        if reference_mode == "audio_aware":
            self.ref_audio_conv = nn.Conv1d(audio_dim, d_model, conv_kernel, padding=conv_kernel // 2)
            self.ref_audio_encoder = TransformerEncoder(d_model, num_heads, ff_dim, audio_encoder_layers, dropout)
        if uses_reference:
            self.ref_lip_in = nn.Linear(num_params, d_model)
            self.ref_lip_encoder = TransformerEncoder(d_model, num_heads, ff_dim, lip_encoder_layers, dropout)
            # The "no reference" memory: one learned key/value token (used under reference dropout).
            self.null_key = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
            self.null_value = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.blocks = nn.ModuleList(
            [DecoderBlock(d_model, num_heads, ff_dim, dropout, cross=uses_reference) for _ in range(decoder_layers)]
        )
        self.head = nn.Sequential(
            nn.LayerNorm(d_model), nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, num_params)
        )

    # ------------------------------------------------------------------ features
    @property
    def feature_spec_obj(self) -> FeatureSpec | None:
        """The audio features this model was trained on (None if the config does not record them)."""
        spec = self.config.feature_spec
        return None if not spec else FeatureSpec.from_dict(spec)

    def check_feature_spec(self, spec: FeatureSpec, what: str = "audio features") -> None:
        """Raise LipSyncInputError when ``spec`` differs from the model's (its size must match in any case)."""
        if spec.dims != self.config.audio_dim:
            raise LipSyncInputError(
                f"{what}: {spec.dims} dims per frame but this motion model takes {self.config.audio_dim}; "
                "compute the features with the model's feature spec."
            )
        trained_on = self.feature_spec_obj
        if trained_on is not None:
            spec.check_compatible(trained_on, what)

    # ------------------------------------------------------------------ reference
    @property
    def uses_reference(self) -> bool:
        return self.config.reference_mode != "none"

    def encode_reference(
        self,
        ref_audio: torch.Tensor | None,
        ref_mouth: torch.Tensor,
        ref_padding_mask: torch.Tensor | None = None,
    ) -> ReferenceMemory:
        """Run the reference encoders once: ref_audio [G, n, D], ref_mouth [G, n, 13] -> keys/values [G, n, d]."""
        if not self.uses_reference:
            raise LipSyncInputError("this model has reference_mode='none': it takes no style reference.")
        cfg = self.config
        if ref_mouth.dim() != 3 or ref_mouth.shape[-1] != cfg.num_params:
            raise LipSyncInputError(
                f"ref_mouth has shape {tuple(ref_mouth.shape)}; expected [batch, n, {cfg.num_params}] mouth params."
            )
        g, n, _ = ref_mouth.shape
        if n == 0:
            raise LipSyncInputError("ref_mouth has no frames; give a reference clip of at least one frame or None.")
        if ref_padding_mask is not None:
            ref_padding_mask = ref_padding_mask.to(device=ref_mouth.device, dtype=torch.bool)
            if ref_padding_mask.shape != (g, n):
                raise LipSyncInputError(
                    f"ref_padding_mask has shape {tuple(ref_padding_mask.shape)}; expected {(g, n)}."
                )
        dtype = self.ref_lip_in.weight.dtype
        positions = sinusoidal_positions(n, cfg.d_model, ref_mouth.device, dtype)
        ref_mouth = ref_mouth.to(dtype)
        if ref_padding_mask is not None:
            ref_mouth = ref_mouth.masked_fill(ref_padding_mask[..., None], 0.0)
        values = self.ref_lip_encoder(self.ref_lip_in(ref_mouth) + positions, ref_padding_mask)
        if cfg.reference_mode == "lip_only":
            keys = values
        else:
            if ref_audio is None:
                raise LipSyncInputError("ref_audio is missing; an audio_aware model needs the reference clip's audio.")
            if ref_audio.shape[:2] != (g, n) or ref_audio.shape[-1] != cfg.audio_dim:
                raise LipSyncInputError(
                    f"ref_audio has shape {tuple(ref_audio.shape)}; expected [{g}, {n}, {cfg.audio_dim}] "
                    "(frame-aligned with ref_mouth, the model's audio feature size)."
                )
            ref_audio = ref_audio.to(dtype)
            if ref_padding_mask is not None:
                # Zero padded frames so the temporal conv sees them exactly like its own zero padding.
                ref_audio = ref_audio.masked_fill(ref_padding_mask[..., None], 0.0)
            audio_tokens = self.ref_audio_conv(ref_audio.transpose(1, 2)).transpose(1, 2)
            keys = self.ref_audio_encoder(audio_tokens + positions, ref_padding_mask)
        return ReferenceMemory(keys=keys, values=values, padding_mask=ref_padding_mask)

    def _memory_for_blocks(
        self, memory: ReferenceMemory | None, drop: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]:
        """Keys, values [G, n', d], mask [G, 1, 1, n'] (True = attend) and n (reference length)."""
        if memory is None:
            return self.null_key, self.null_value, None, 0
        keys, values, pad = memory.keys, memory.values, memory.padding_mask
        g, n = keys.shape[0], keys.shape[1]
        if pad is not None:
            # A sample whose reference is all padding is treated as having no reference.
            empty = pad.all(dim=1)
            drop = empty if drop is None else (drop | empty)
        if drop is None:
            mask = None if pad is None else (~pad)[:, None, None, :]
            return keys, values, mask, n
        drop = drop.to(device=keys.device, dtype=torch.bool).reshape(-1)
        if drop.shape[0] != g:
            drop = drop.expand(g) if drop.shape[0] == 1 else drop
        keys = torch.cat([keys, self.null_key.expand(g, 1, -1).to(keys.dtype)], dim=1)
        values = torch.cat([values, self.null_value.expand(g, 1, -1).to(values.dtype)], dim=1)
        allowed = ~drop[:, None].expand(g, n)
        if pad is not None:
            allowed = allowed & ~pad
        mask = torch.cat([allowed, drop[:, None]], dim=1)[:, None, None, :]
        return keys, values, mask, n

    # ------------------------------------------------------------------ decoding
    def _decode(
        self,
        windows: torch.Tensor,
        memory: ReferenceMemory | None,
        drop: torch.Tensor | None,
        return_attention: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """windows [G, M, 2w+1, D] -> params [G*M, 13] and attention [G*M, n] (or None)."""
        cfg = self.config
        g, m, length, dims = windows.shape
        dtype = self.window_conv.weight.dtype
        flat = windows.reshape(g * m, length, dims).to(dtype).transpose(1, 2)
        x = self.window_conv(flat).transpose(1, 2) + self.window_positions.to(dtype)
        x = self.input_dropout(x).view(g, m, length, cfg.d_model)
        mid = cfg.window
        kv_by_block: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.blocks)
        mask = None
        n = 0
        if self.uses_reference:
            keys, values, mask, n = self._memory_for_blocks(memory, drop)
            keys, values = keys.to(dtype), values.to(dtype)
            kv_by_block = [block.cross_attn.project_kv(keys, values) for block in self.blocks]
        weights = None
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            need = return_attention and i == last and memory is not None and self.uses_reference
            x, w = block(x, kv_by_block[i], mask, need_weights=need, only_index=mid if i == last else None)
            if need:
                weights = w
        params = self.head(x.reshape(g * m, cfg.d_model))
        attn = None
        if weights is not None:
            # Last block, middle token, mean over heads; drop the null token's column if it was appended.
            attn = weights.mean(dim=1)[..., :n].reshape(g * m, n)
        return params, attn

    def forward(
        self,
        audio_windows: torch.Tensor,
        ref_audio: torch.Tensor | None = None,
        ref_mouth: torch.Tensor | None = None,
        ref_padding_mask: torch.Tensor | None = None,
        return_attention: bool = False,
        drop_reference: torch.Tensor | None = None,
        reference: ReferenceMemory | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """audio_windows [B, 2w+1, D] (+ reference [B or 1, n, ...]) -> params [B, 13] (and attention [B, n]).

        ``drop_reference`` [B] bool forces the no-reference path per sample; in training mode it is
        drawn with probability ``reference_dropout`` when not given. ``reference`` is a precomputed
        :class:`ReferenceMemory` (skips the encoders). The returned attention is the last decoder
        block's cross-attention for the middle token, averaged over heads; rows sum to 1 (0 for
        samples whose reference was dropped).
        """
        self._check_windows(audio_windows)
        b = audio_windows.shape[0]
        memory = reference
        if memory is None and self.uses_reference and ref_mouth is not None:
            memory = self.encode_reference(ref_audio, ref_mouth, ref_padding_mask)
        if not self.uses_reference:
            memory = None
        g = 1 if memory is None else memory.keys.shape[0]
        if g not in (1, b):
            raise LipSyncInputError(
                f"reference batch is {g} for {b} windows; give one reference (1) or one per window ({b})."
            )
        if memory is not None and drop_reference is None and self.training and self.config.reference_dropout > 0:
            drop_reference = torch.rand(g, device=audio_windows.device) < self.config.reference_dropout
        if memory is not None and drop_reference is not None and drop_reference.numel() != g:
            raise LipSyncInputError(
                f"drop_reference has {drop_reference.numel()} entries; expected one per reference ({g})."
            )
        params, attn = self._decode(
            audio_windows.reshape(g, b // g, *audio_windows.shape[1:]), memory, drop_reference, return_attention
        )
        return (params, attn) if return_attention else params

    def _check_windows(self, audio_windows: torch.Tensor) -> None:
        cfg = self.config
        if audio_windows.dim() != 3 or audio_windows.shape[1:] != (self.window_frames, cfg.audio_dim):
            raise LipSyncInputError(
                f"audio_windows has shape {tuple(audio_windows.shape)}; expected [batch, {self.window_frames}, "
                f"{cfg.audio_dim}] (2w+1 frames of the model's audio features; use make_windows)."
            )

    # ------------------------------------------------------------------ clips
    def make_windows(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [T, D] (or [B, T, D]) -> windows [T, 2w+1, D] ([B, T, 2w+1, D]), edge frames replicated."""
        w = self.config.window
        squeeze = audio.dim() == 2
        seq = audio[None] if squeeze else audio
        padded = torch.cat([seq[:, :1].expand(-1, w, -1), seq, seq[:, -1:].expand(-1, w, -1)], dim=1)
        windows = padded.unfold(1, 2 * w + 1, 1).transpose(-1, -2)  # [B, T, 2w+1, D], a view
        return windows[0] if squeeze else windows

    def forward_clips(
        self,
        audio: torch.Tensor,
        ref_audio: torch.Tensor | None = None,
        ref_mouth: torch.Tensor | None = None,
        ref_padding_mask: torch.Tensor | None = None,
        drop_reference: torch.Tensor | None = None,
        return_attention: bool = False,
        audio_has_context: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Training helper: audio [B, L, D] with one reference per clip -> params [B, L, 13] (with gradients).

        Every frame's window is built inside its clip (edge-replicated), or, with ``audio_has_context``,
        audio is [B, L + 2w, D] with w real frames of context on each side (as at inference inside a
        long clip). The B references are encoded once.
        """
        w = self.config.window
        if audio.dim() != 3 or audio.shape[-1] != self.config.audio_dim:
            raise LipSyncInputError(f"audio has shape {tuple(audio.shape)}; expected [B, L, {self.config.audio_dim}].")
        if audio_has_context and audio.shape[1] <= 2 * w:
            raise LipSyncInputError(f"audio has {audio.shape[1]} frames; with context it needs more than 2w = {2 * w}.")
        b = audio.shape[0]
        length = audio.shape[1] - (2 * w if audio_has_context else 0)
        memory = None
        if self.uses_reference and ref_mouth is not None:
            memory = self.encode_reference(ref_audio, ref_mouth, ref_padding_mask)
            if memory.keys.shape[0] != b:
                raise LipSyncInputError(f"one reference per clip is needed: got {memory.keys.shape[0]} for {b} clips.")
            if drop_reference is None and self.training and self.config.reference_dropout > 0:
                drop_reference = torch.rand(b, device=audio.device) < self.config.reference_dropout
        if audio_has_context:
            windows = audio.unfold(1, 2 * w + 1, 1).transpose(-1, -2)  # [B, L, 2w+1, D]
        else:
            windows = self.make_windows(audio)
        if memory is None:
            windows = windows.reshape(1, b * length, *windows.shape[2:])
        params, attn = self._decode(windows, memory, drop_reference, return_attention)
        params = params.view(b, length, -1)
        attn = None if attn is None else attn.view(b, length, -1)
        return (params, attn) if return_attention else params

    @torch.no_grad()
    def predict_clip(
        self,
        audio: torch.Tensor | np.ndarray,
        ref_audio: torch.Tensor | np.ndarray | None = None,
        ref_mouth: torch.Tensor | np.ndarray | None = None,
        style_strength: float = 1.0,
        return_attention: bool = False,
        batch_size: int | None = 4096,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every frame of a clip in batched calls: audio [T, D] -> (params [T, 13], attention [T, n] | None).

        The reference encoders run once. ``style_strength`` s blends m_none + s * (m_ref - m_none):
        0 = the generic style (no reference), 1 = the reference's. ``batch_size`` windows go through
        the decoder at a time, so memory is bounded by it, not by the clip's length (None = all at
        once); the result does not depend on it. Runs in eval mode, without gradients.
        """
        device, dtype = self.window_conv.weight.device, self.window_conv.weight.dtype
        audio_t = _as_tensor(audio, "audio", device, dtype)
        if audio_t.dim() != 2 or audio_t.shape[1] != self.config.audio_dim or audio_t.shape[0] == 0:
            raise LipSyncInputError(
                f"audio has shape {tuple(audio_t.shape)}; expected [T>0, {self.config.audio_dim}] audio features."
            )
        was_training = self.training
        self.eval()
        try:
            memory = None
            if self.uses_reference and ref_mouth is not None:
                mouth_t = _as_tensor(ref_mouth, "ref_mouth", device, dtype)
                ref_audio_t = None if ref_audio is None else _as_tensor(ref_audio, "ref_audio", device, dtype)
                memory = self.encode_reference(
                    None if ref_audio_t is None else ref_audio_t[None], mouth_t[None] if mouth_t.dim() == 2 else mouth_t
                )
            windows = self.make_windows(audio_t)
            total = windows.shape[0]
            step = total if not batch_size or batch_size <= 0 else int(batch_size)
            want_none = memory is None or float(style_strength) != 1.0
            params_out, attn_out = [], []
            for start in range(0, total, step):
                chunk = windows[start : start + step][None]
                if memory is not None:
                    m_ref, attn = self._decode(chunk, memory, None, return_attention)
                    attn_out.append(attn)
                if want_none:
                    m_none, _ = self._decode(chunk, None, None, False)
                params_out.append(
                    m_none
                    if memory is None
                    else (m_ref if not want_none else m_none + style_strength * (m_ref - m_none))
                )
            params = torch.cat(params_out, dim=0)
            attention_t = torch.cat(attn_out, dim=0) if (return_attention and memory is not None) else None
            return params, attention_t
        finally:
            self.train(was_training)


def _as_tensor(x: torch.Tensor | np.ndarray, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise LipSyncInputError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}.")
    if not torch.isfinite(x).all():
        raise LipSyncInputError(f"{name} contains NaN or infinite values; recompute it.")
    return x.to(device=device, dtype=dtype)


def motion_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    vertex_basis: torch.Tensor | None,
    vertex_weight: float = 300.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L1 on mouth params + ``vertex_weight`` x L1 on lip vertices rebuilt through the linear mouth basis.

    pred / target: [B, 13] or [B, L, 13]. vertex_basis: [13, V*3] components of the mouth model
    (vertices = mean + params @ components, so the mean cancels in the difference). Both terms are
    means over elements: param_l1 per coefficient, vertex_l1 per vertex coordinate, in the basis'
    units (the mouth model's aligned canonical face). ``vertex_basis=None`` drops the vertex term.
    """
    if pred.shape != target.shape:
        raise LipSyncInputError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape.")
    diff = pred - target.to(pred.dtype)
    param_l1 = diff.abs().mean()
    if vertex_basis is None:
        vertex_l1 = torch.zeros((), dtype=pred.dtype, device=pred.device)
    else:
        if vertex_basis.dim() != 2 or vertex_basis.shape[0] != pred.shape[-1]:
            raise LipSyncInputError(
                f"vertex_basis has shape {tuple(vertex_basis.shape)}; expected [{pred.shape[-1]}, V*3]."
            )
        vertex_l1 = (diff @ vertex_basis.to(device=pred.device, dtype=pred.dtype)).abs().mean()
    loss = param_l1 + float(vertex_weight) * vertex_l1
    return loss, {"param_l1": param_l1.detach(), "vertex_l1": vertex_l1.detach()}
