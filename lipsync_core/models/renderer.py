"""Stage 2: the rendering U-Net (conditional latent diffusion on the lower half of the face latent).

- Input: the face-crop latent ``sample`` whose upper half is the clean latent of the masked input
  frame (context) and whose lower half is noisy; plus extra context channels (see ``_context``).
- Output: the predicted noise eps. Loss and sampling touch only the lower half.
- Lip motion enters through StyleGAN2 modulated convolutions (with demodulation) in every residual
  block: a window of per-frame motion vectors [mouth params, identity code, rotation] -> 1D temporal
  convs -> motion code -> MLP -> one affine per modulated conv -> per-input-channel scales phi.
- Appearance: an encoder of residual conv blocks runs on the reference image latent(s) and gives
  multi-scale features; spatial cross-attention after the modulated convs takes Q from the U-Net
  and K = V from those features (k >= 1 references: their tokens are concatenated).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..types import NUM_MOUTH_PARAMS, LipSyncInputError
from .attention import attention
from .layers import MultiHeadAttention, sinusoidal_positions

MODCONV_IMPLS = ("auto", "grouped", "input_scaling")


def _groups(channels: int, wanted: int) -> int:
    return math.gcd(channels, wanted)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    bias: torch.Tensor | None = None,
    padding: int = 1,
    demodulate: bool = True,
    eps: float = 1e-8,
    impl: str = "auto",
) -> torch.Tensor:
    """StyleGAN2 modulated convolution, one code per sample, without a per-sample loop.

    w'_ijk = phi_i * w_ijk / sqrt(sum_{i,k} (phi_i * w_ijk)^2 + eps) for input channel i, output
    channel j, kernel tap k. ``impl="grouped"`` builds the per-sample weights and runs one grouped
    convolution over the batch (groups = B); ``impl="input_scaling"`` computes the same numbers by
    scaling the input by phi, convolving with the shared weight and scaling the output by the
    demodulation factor (linear algebra identity; about 3x faster on CPU). ``impl="auto"`` picks
    grouped on CUDA and input scaling elsewhere (docs/DECISIONS.md).
    x [B, I, H, W], weight [J, I, k, k], styles [B, I] -> [B, J, H', W'].
    """
    b, in_ch, height, width = x.shape
    out_ch, _, kh, kw = weight.shape
    if impl == "auto":
        impl = "grouped" if x.is_cuda else "input_scaling"
    styles = styles.float()
    w32 = weight.float()
    if impl == "grouped":
        w = w32[None] * styles[:, None, :, None, None]  # [B, J, I, k, k]
        if demodulate:
            w = w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + eps)
        out = F.conv2d(
            x.reshape(1, b * in_ch, height, width),
            w.reshape(b * out_ch, in_ch, kh, kw).to(x.dtype),
            padding=padding,
            groups=b,
        )
        out = out.view(b, out_ch, out.shape[-2], out.shape[-1])
    elif impl == "input_scaling":
        out = F.conv2d(x * styles[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=padding)
        if demodulate:
            # sum_{i,k} (phi_i w_jik)^2 = sum_i phi_i^2 * sum_k w_jik^2
            demod = torch.rsqrt(styles.square() @ w32.square().sum(dim=(2, 3)).t() + eps)  # [B, J]
            out = out * demod[:, :, None, None].to(out.dtype)
    else:
        raise LipSyncInputError(f"modconv_impl={impl!r}: use one of {MODCONV_IMPLS}.")
    if bias is not None:
        out = out + bias.to(out.dtype)[None, :, None, None]
    return out


class ModulatedConv2d(nn.Module):
    """A 3x3 conv whose per-input-channel scales phi come from the motion code via its own affine."""

    def __init__(
        self, in_ch: int, out_ch: int, code_dim: int, kernel: int = 3, eps: float = 1e-8, impl: str = "auto"
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel) / math.sqrt(in_ch * kernel * kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.affine = nn.Linear(code_dim, in_ch)
        nn.init.normal_(self.affine.weight, std=1.0 / math.sqrt(code_dim))
        nn.init.ones_(self.affine.bias)  # phi starts near 1: an ordinary (demodulated) conv
        self.padding = kernel // 2
        self.eps = eps
        self.impl = impl

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        phi = self.affine(code)
        return modulated_conv2d(x, self.weight, phi, self.bias, self.padding, True, self.eps, self.impl)


class ModulatedResBlock(nn.Module):
    """GroupNorm-SiLU-ModConv, + timestep embedding, GroupNorm-SiLU-ModConv, residual add."""

    def __init__(
        self, in_ch: int, out_ch: int, temb_dim: int, code_dim: int, groups: int, eps: float, impl: str
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch, groups), in_ch)
        self.conv1 = ModulatedConv2d(in_ch, out_ch, code_dim, eps=eps, impl=impl)
        self.time_proj = nn.Linear(temb_dim, out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch, groups), out_ch)
        self.conv2 = ModulatedConv2d(out_ch, out_ch, code_dim, eps=eps, impl=impl)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), code) + self.time_proj(F.silu(temb))[:, :, None, None].to(x.dtype)
        h = self.conv2(F.silu(self.norm2(h)), code)
        return self.skip(x) + h


class ResBlock(nn.Module):
    """Plain residual conv block (appearance encoder)."""

    def __init__(self, in_ch: int, out_ch: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch, groups), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(out_ch, groups), out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class ReferenceCrossAttention(nn.Module):
    """Spatial cross-attention: Q from U-Net features, K = V from appearance tokens; residual add.

    With ``positions`` a fixed 2D sin/cos code of the pixel position is added to the queries and the
    keys (not the values), so a query can look up the *same place* in the reference face (the mouth
    region of the reference for the mouth region of the frame) as well as similar content.
    """

    def __init__(self, channels: int, ref_channels: int, head_dim: int, groups: int, positions: bool = True) -> None:
        super().__init__()
        heads = max(1, channels // head_dim)
        self.positions = positions
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.ref_norm = nn.LayerNorm(ref_channels)
        self.attn = MultiHeadAttention(
            channels, heads, key_dim=ref_channels, value_dim=ref_channels, head_dim=channels // heads
        )

    def forward(self, x: torch.Tensor, ref_tokens: torch.Tensor, ref_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """x [B, C, H, W]; ref_tokens [B or 1, k*h*w, c] (one reference set may serve the whole batch)."""
        b, c, height, width = x.shape
        attn = self.attn
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        ref = self.ref_norm(ref_tokens.to(x.dtype))
        ref_keys = ref
        if self.positions:
            tokens = tokens + sinusoidal_positions_2d(height, width, c, x.device, tokens.dtype)
            rh, rw = ref_hw or (height, width)
            table = sinusoidal_positions_2d(rh, rw, ref.shape[-1], x.device, ref.dtype)
            ref_keys = ref + table.repeat(ref.shape[1] // (rh * rw), 1)
        q = attn.split_heads(attn.to_q(tokens))  # [B, h, HW, dh]
        k, v = attn.project_kv(ref_keys, ref)
        g = k.shape[0]
        if g == b:
            out = attention(q, k, v)
        elif g == 1:
            # Fold the batch into the query axis: one reference set, one attention call, no copies of K/V.
            qf = q.transpose(0, 1).reshape(1, attn.num_heads, b * height * width, attn.head_dim)
            out = attention(qf, k, v).view(attn.num_heads, b, height * width, attn.head_dim).transpose(0, 1)
        else:
            raise LipSyncInputError(f"reference features have batch {g}; expected 1 or the sample batch {b}.")
        out = attn.to_out(attn.merge_heads(out))
        return x + out.transpose(1, 2).reshape(b, c, height, width)


def sinusoidal_positions_2d(
    height: int, width: int, channels: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """[height*width, channels]: half the channels encode the row, half the column (sin/cos pairs)."""
    half = channels // 2
    rows = sinusoidal_positions(height, half, device, torch.float32)  # [H, half]
    cols = sinusoidal_positions(width, channels - half, device, torch.float32)  # [W, channels-half]
    table = torch.cat([rows[:, None, :].expand(height, width, half), cols[None].expand(height, width, -1)], dim=-1)
    return table.reshape(height * width, channels).to(dtype)


class MotionEncoder(nn.Module):
    """Window of motion vectors [B, W, motion_dim] -> 1D temporal convs -> code -> MLP -> [B, code_dim]."""

    def __init__(self, motion_dim: int, window: int, hidden: int, code_dim: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv1d(motion_dim, hidden, 3, padding=1), nn.SiLU(), nn.Conv1d(hidden, hidden, 3, padding=1), nn.SiLU()
        )
        self.to_code = nn.Linear(hidden * window, code_dim)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(code_dim, code_dim), nn.SiLU(), nn.Linear(code_dim, code_dim))

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        h = self.convs(motion.transpose(1, 2))  # [B, hidden, W]
        return self.mlp(self.to_code(h.flatten(1)))


class AppearanceEncoder(nn.Module):
    """Residual conv blocks on a reference latent -> one feature map per U-Net level."""

    def __init__(self, latent_channels: int, channels: tuple[int, ...], groups: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(latent_channels, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        prev = channels[0]
        for i, ch in enumerate(channels):
            self.blocks.append(ResBlock(prev, ch, groups))
            prev = ch
            if i < len(channels) - 1:
                self.downsamplers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        h = self.conv_in(z)
        feats = []
        for i, block in enumerate(self.blocks):
            h = block(h)
            feats.append(h)
            if i < len(self.downsamplers):
                h = self.downsamplers[i](h)
        return feats


@dataclass
class ReferenceFeatures:
    """Appearance tokens per U-Net level, [B or 1, k*h_l*w_l, c_l]; compute once per chunk, reuse every step."""

    tokens: list[torch.Tensor]
    sizes: list[tuple[int, int]] | None = None  # (h, w) of each level's feature map

    @property
    def batch(self) -> int:
        return int(self.tokens[0].shape[0])


def lower_half_mask(
    h: int, w: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """[1, 1, h, w] mask: 1 on the rows that are denoised (the lower half, rows >= h // 2), 0 above."""
    mask = torch.zeros(1, 1, h, w, device=device, dtype=dtype)
    mask[..., h // 2 :, :] = 1
    return mask


def renderer_loss(eps_pred: torch.Tensor, eps_true: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Epsilon-prediction MSE over the lower half of the latent only (the upper half is clean context).

    ``weight`` [h - h//2, w] (optional) weighs the lower half's positions (e.g. more on the mouth); it is
    normalised to mean 1, so the loss keeps its scale.
    """
    if eps_pred.shape != eps_true.shape:
        raise LipSyncInputError(f"eps_pred {tuple(eps_pred.shape)} and eps_true {tuple(eps_true.shape)} differ.")
    h = eps_pred.shape[-2]
    err = (eps_pred[..., h // 2 :, :].float() - eps_true[..., h // 2 :, :].float()).square()
    if weight is None:
        return err.mean()
    weight = weight.to(err) / weight.float().mean()
    return (err * weight).mean()


class LipRenderUNet(ModelMixin, ConfigMixin):
    """Stage-2 denoiser: eps = f(noisy lower half | clean upper half, t, motion window, reference appearance)."""

    config_name = "renderer_config.json"

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,
        latent_size: int = 32,
        crop_size: int = 256,
        latent_scale: float = 0.18215,
        latent_shift: float = 0.0,
        block_out_channels: tuple[int, ...] = (64, 128, 256),
        layers_per_block: int = 1,
        cross_attention_levels: tuple[bool, ...] = (False, True, True),
        mid_cross_attention: bool = True,
        attention_head_dim: int = 32,
        num_params: int = NUM_MOUTH_PARAMS,
        identity_dim: int = 16,
        rotation_dim: int = 3,
        motion_window: int = 5,
        motion_hidden_dim: int = 128,
        motion_code_dim: int = 256,
        appearance_channels: tuple[int, ...] | None = None,
        use_mask_channel: bool = True,
        use_masked_latent: bool = False,
        reference_concat: bool = False,
        mouth_map_channels: int = 0,
        motion_dropout: float = 0.0,
        motion_mean: tuple[float, ...] | None = None,
        motion_std: tuple[float, ...] | None = None,
        reference_positions: bool = True,
        norm_groups: int = 32,
        modulation_eps: float = 1e-8,
        modconv_impl: str = "auto",
        num_train_timesteps: int = 1000,
        vae_spec: dict[str, Any] | None = None,
        crop_framing: tuple[float, float, float] | None = None,
    ) -> None:
        super().__init__()
        levels = len(block_out_channels)
        if len(cross_attention_levels) != levels:
            raise LipSyncInputError(
                f"cross_attention_levels has {len(cross_attention_levels)} entries; one per level ({levels}) is needed."
            )
        if motion_window % 2 == 0 or motion_window < 1:
            raise LipSyncInputError(f"motion_window={motion_window} must be odd (centred on the frame).")
        if modconv_impl not in MODCONV_IMPLS:
            raise LipSyncInputError(f"modconv_impl={modconv_impl!r}: use one of {MODCONV_IMPLS}.")
        if latent_size % (2**levels) != 0:
            raise LipSyncInputError(
                f"latent_size={latent_size} must be divisible by {2**levels} for {levels} U-Net levels."
            )
        for name, stats in (("motion_mean", motion_mean), ("motion_std", motion_std)):
            if stats is not None and len(stats) != num_params + identity_dim + rotation_dim:
                raise LipSyncInputError(f"{name} has {len(stats)} entries; one per motion feature is needed.")
        app_channels = tuple(appearance_channels or block_out_channels)
        if len(app_channels) != levels:
            raise LipSyncInputError(f"appearance_channels needs {levels} entries (one per U-Net level).")
        ch0 = block_out_channels[0]
        temb_dim = ch0 * 4
        code = motion_code_dim
        g, eps, impl = norm_groups, modulation_eps, modconv_impl
        self.time_proj = Timesteps(ch0, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(ch0, temb_dim)
        self.motion_encoder = MotionEncoder(self.motion_dim, motion_window, motion_hidden_dim, code)
        self.appearance_encoder = AppearanceEncoder(latent_channels, app_channels, g)
        self.conv_in = nn.Conv2d(self.in_channels, ch0, 3, padding=1)

        def attn(level: int, ch: int) -> nn.Module | None:
            return ReferenceCrossAttention(ch, app_channels[level], attention_head_dim, g, reference_positions)

        self.down_res = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        prev = ch0
        for level, ch in enumerate(block_out_channels):
            self.down_res.append(
                nn.ModuleList(
                    [
                        ModulatedResBlock(prev if j == 0 else ch, ch, temb_dim, code, g, eps, impl)
                        for j in range(layers_per_block)
                    ]
                )
            )
            use_attn = cross_attention_levels[level]
            self.down_attn.append(
                nn.ModuleList([attn(level, ch) for _ in range(layers_per_block)]) if use_attn else nn.ModuleList()
            )
            prev = ch
            if level < levels - 1:
                self.downsamplers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        top = block_out_channels[-1]
        self.mid_res1 = ModulatedResBlock(top, top, temb_dim, code, g, eps, impl)
        self.mid_attn = attn(levels - 1, top) if mid_cross_attention else None
        self.mid_res2 = ModulatedResBlock(top, top, temb_dim, code, g, eps, impl)

        self.up_res = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        prev = top
        for level in reversed(range(levels)):
            ch = block_out_channels[level]
            self.up_res.append(
                nn.ModuleList(
                    [
                        ModulatedResBlock(prev + ch if j == 0 else ch, ch, temb_dim, code, g, eps, impl)
                        for j in range(layers_per_block)
                    ]
                )
            )
            use_attn = cross_attention_levels[level]
            self.up_attn.append(
                nn.ModuleList([attn(level, ch) for _ in range(layers_per_block)]) if use_attn else nn.ModuleList()
            )
            prev = ch
            if level > 0:
                self.upsamplers.append(nn.Conv2d(ch, ch, 3, padding=1))
        # Motion statistics of the training data (config): the motion encoder sees every feature at unit scale.
        dims = self.motion_dim
        self.register_buffer("norm_motion_mean", torch.tensor(motion_mean or [0.0] * dims), persistent=False)
        self.register_buffer("norm_motion_std", torch.tensor(motion_std or [1.0] * dims).clamp_min(1e-6),
                             persistent=False)
        self.norm_out = nn.GroupNorm(_groups(ch0, g), ch0)
        self.conv_out = nn.Conv2d(ch0, latent_channels, 3, padding=1)

    # ------------------------------------------------------------------ shapes
    @property
    def motion_dim(self) -> int:
        cfg = self.config
        return cfg.num_params + cfg.identity_dim + cfg.rotation_dim

    @property
    def in_channels(self) -> int:
        cfg = self.config
        latents = 1 + int(cfg.use_masked_latent) + int(cfg.reference_concat)
        return cfg.latent_channels * latents + (1 if cfg.use_mask_channel else 0) + cfg.mouth_map_channels

    # ------------------------------------------------------------------ reference
    def encode_reference(self, reference_latents: torch.Tensor) -> ReferenceFeatures:
        """reference_latents [B, k, C, h, w] (scaled like ``sample``) -> appearance tokens per level."""
        cfg = self.config
        if reference_latents.dim() == 4:
            reference_latents = reference_latents[:, None]
        if reference_latents.dim() != 5 or reference_latents.shape[2] != cfg.latent_channels:
            raise LipSyncInputError(
                f"reference_latents has shape {tuple(reference_latents.shape)}; expected "
                f"[batch, k, {cfg.latent_channels}, h, w] (latents of k >= 1 reference faces)."
            )
        b, k = reference_latents.shape[:2]
        dtype = self.conv_in.weight.dtype
        feats = self.appearance_encoder(reference_latents.flatten(0, 1).to(dtype))
        tokens, sizes = [], []
        for f in feats:
            c, h, w = f.shape[1:]
            tokens.append(f.view(b, k, c, h * w).permute(0, 1, 3, 2).reshape(b, k * h * w, c))
            sizes.append((h, w))
        return ReferenceFeatures(tokens, sizes)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        motion: torch.Tensor,
        reference_latents: torch.Tensor | None = None,
        masked_latent: torch.Tensor | None = None,
        reference_features: ReferenceFeatures | None = None,
        reference_latent: torch.Tensor | None = None,
        mouth_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """sample [B, C, h, w] (clean upper half, noisy lower half), timestep [B] or scalar,
        motion [B, W, 13 + identity_dim + rotation_dim] -> eps [B, C, h, w].

        reference_latent [B, C, h, w]: with ``reference_concat``, one reference face per sample (the one whose
        mouth opening is nearest the driving motion's) stacked as input channels: a copy path for appearance
        detail that cross-attention at low resolution cannot carry (docs/DECISIONS.md).

        mouth_map [B, mouth_map_channels, h, w]: with ``mouth_map_channels`` > 0, the lips the motion asks for
        drawn at their place in the crop (``render.conditioning.mouth_map``): where the mouth goes, spatially,
        beside the modulated convolutions' how (docs/DECISIONS.md)."""
        cfg = self.config
        if sample.dim() != 4 or sample.shape[1] != cfg.latent_channels:
            raise LipSyncInputError(
                f"sample has shape {tuple(sample.shape)}; expected [batch, {cfg.latent_channels}, h, w]."
            )
        b, _, h, w = sample.shape
        levels = len(cfg.block_out_channels)
        if h % (2**levels) or w % (2**levels):
            raise LipSyncInputError(f"latent size {h}x{w} must be divisible by {2**levels} for this U-Net.")
        if motion.dim() != 3 or motion.shape[1:] != (cfg.motion_window, self.motion_dim) or motion.shape[0] != b:
            raise LipSyncInputError(
                f"motion has shape {tuple(motion.shape)}; expected [{b}, {cfg.motion_window}, {self.motion_dim}] "
                f"(window of [mouth params ({cfg.num_params}), identity ({cfg.identity_dim}), "
                f"rotation ({cfg.rotation_dim})])."
            )
        dtype = self.conv_in.weight.dtype
        x = self._context(sample.to(dtype), masked_latent, reference_latent, mouth_map)
        t = torch.as_tensor(timestep, device=sample.device)
        if t.dim() == 0:
            t = t[None]
        t = t.expand(b)
        temb = self.time_embedding(self.time_proj(t).to(dtype))
        code = self.motion_encoder(((motion - self.norm_motion_mean) / self.norm_motion_std).to(dtype))
        if reference_features is None and reference_latents is not None:
            reference_features = self.encode_reference(reference_latents)
        refs = None if reference_features is None else reference_features.tokens
        sizes = None if reference_features is None else reference_features.sizes

        def cross(block: nn.Module | None, hidden: torch.Tensor, level: int) -> torch.Tensor:
            if block is None or refs is None:
                return hidden
            return block(hidden, refs[level], None if sizes is None else sizes[level])

        hidden = self.conv_in(x)
        skips = []
        for level in range(levels):
            for j, res in enumerate(self.down_res[level]):
                hidden = res(hidden, temb, code)
                if len(self.down_attn[level]):
                    hidden = cross(self.down_attn[level][j], hidden, level)
            skips.append(hidden)
            if level < levels - 1:
                hidden = self.downsamplers[level](hidden)
        hidden = self.mid_res1(hidden, temb, code)
        hidden = cross(self.mid_attn, hidden, levels - 1)
        hidden = self.mid_res2(hidden, temb, code)
        for i, level in enumerate(reversed(range(levels))):
            hidden = torch.cat([hidden, skips[level]], dim=1)
            for j, res in enumerate(self.up_res[i]):
                hidden = res(hidden, temb, code)
                if len(self.up_attn[i]):
                    hidden = cross(self.up_attn[i][j], hidden, level)
            if level > 0:
                hidden = self.upsamplers[i](F.interpolate(hidden, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(hidden)))

    @property
    def can_guide(self) -> bool:
        """True when training dropped the motion now and then (``motion_dropout``): the model then also knows
        the face without motion, and :meth:`guided` can push the output along the motion."""
        return float(self.config.motion_dropout) > 0

    def without_motion(self, motion: torch.Tensor, mouth_map: torch.Tensor | None,
                       drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The motion condition removed (for ``drop`` [B] True rows, default all): motion windows set to the
        training data's mean (zero after normalisation) and an empty mouth map. Training drops with
        probability ``motion_dropout``; guidance contrasts with it."""
        mean = self.norm_motion_mean.to(motion)
        keep = None if drop is None else ~drop.to(motion.device)
        motion = mean.expand_as(motion) if keep is None else torch.where(keep[:, None, None], motion, mean)
        if mouth_map is not None:
            mouth_map = torch.zeros_like(mouth_map) if keep is None else mouth_map * keep[:, None, None, None]
        return motion, mouth_map

    def guided(self, sample: torch.Tensor, timestep: torch.Tensor, motion: torch.Tensor, guidance: float = 1.0,
               masked_latent: torch.Tensor | None = None, reference_features: ReferenceFeatures | None = None,
               reference_latent: torch.Tensor | None = None, mouth_map: torch.Tensor | None = None,
               reference_latents: torch.Tensor | None = None, call: Callable[..., torch.Tensor] | None = None,
               ) -> torch.Tensor:
        """eps with classifier-free guidance on the motion: eps(no motion) + g * (eps(motion) - eps(no motion)).

        g > 1 makes the mouth follow the motion more than the references (which pull it towards their own
        mouths); g = 1, or a renderer trained without ``motion_dropout``, is the plain forward. One batched call.
        ``call``: what runs the network (default this module; a render passes its CPU graph, render.traced).
        """
        call = call or self
        if reference_features is None and reference_latents is not None:
            reference_features = self.encode_reference(reference_latents)
        kwargs = {"masked_latent": masked_latent, "reference_features": reference_features,
                  "reference_latent": reference_latent}
        if guidance == 1.0 or not self.can_guide:
            return call(sample, timestep, motion, mouth_map=mouth_map, **kwargs)
        still, blank = self.without_motion(motion, mouth_map)
        b = sample.shape[0]
        if reference_features is not None and reference_features.batch == b and b > 1:
            kwargs["reference_features"] = ReferenceFeatures([t.repeat(2, 1, 1) for t in reference_features.tokens],
                                                             reference_features.sizes)
        for name in ("masked_latent", "reference_latent"):
            if kwargs[name] is not None:
                kwargs[name] = kwargs[name].repeat(2, 1, 1, 1)
        t = torch.as_tensor(timestep, device=sample.device)
        t = (t[None] if t.dim() == 0 else t).expand(b).repeat(2)
        both = call(sample.repeat(2, 1, 1, 1), t, torch.cat([motion, still]),
                    mouth_map=None if mouth_map is None else torch.cat([mouth_map, blank]), **kwargs)
        cond, uncond = both[:b], both[b:]
        return uncond + guidance * (cond - uncond)

    def _context(self, sample: torch.Tensor, masked_latent: torch.Tensor | None,
                 reference_latent: torch.Tensor | None = None, mouth_map: torch.Tensor | None = None) -> torch.Tensor:
        """Stack the extra context channels (docs/DECISIONS.md): masked-frame latent, the aligned reference
        latent, the lower-half mask and the mouth map."""
        cfg = self.config
        b, _, h, w = sample.shape
        parts = [sample]
        for used, name, latent in ((cfg.use_masked_latent, "masked_latent", masked_latent),
                                   (cfg.reference_concat, "reference_latent", reference_latent)):
            if not used:
                continue
            if latent is None or latent.shape != sample.shape:
                got = None if latent is None else tuple(latent.shape)
                raise LipSyncInputError(
                    f"{name} is {got}; this renderer needs it with the sample's shape {tuple(sample.shape)}."
                )
            parts.append(latent.to(sample.dtype))
        if cfg.use_mask_channel:
            parts.append(lower_half_mask(h, w, sample.device, sample.dtype).expand(b, 1, h, w))
        if cfg.mouth_map_channels:
            want = (b, cfg.mouth_map_channels, h, w)
            if mouth_map is None or tuple(mouth_map.shape) != want:
                got = None if mouth_map is None else tuple(mouth_map.shape)
                raise LipSyncInputError(f"mouth_map is {got}; this renderer needs it with shape {want}.")
            parts.append(mouth_map.to(sample.dtype))
        return torch.cat(parts, dim=1) if len(parts) > 1 else sample
