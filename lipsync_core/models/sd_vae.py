"""A user's Stable-Diffusion-shaped VAE from one safetensors file, in either key layout, with no download.

ComfyUI's ``models/vae`` holds SD VAEs in the original LDM layout (``encoder.down.0.block.0.conv1.weight``, also
inside a whole checkpoint under ``first_stage_model.``); diffusers saves ``encoder.down_blocks.0.resnets.0...``.
Both become a diffusers ``AutoencoderKL`` (the class every part of the pack already renders and trains with): the
architecture is read from the tensors' shapes (levels, channels, blocks per level, latent channels, mid-block
attention, quant convs), LDM keys are renamed by diffusers' own converter. Nothing is fetched: diffusers'
``from_single_file`` would look the config up on the Hub.

What the tensors cannot say: GroupNorm's group count (32, SD's, when the channels allow it, else the largest
divisor of the first level's channels up to 32) and the latent scaling factor (the renderer measures its own
``latent_scale`` on the footage; SD 1.5's 0.18215 is recorded as the VAE's ``scaling_factor``).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import torch

from ..types import LipSyncInputError

SD_SCALING_FACTOR = 0.18215


def is_ldm_layout(state: dict[str, torch.Tensor]) -> bool:
    return any(re.match(r"(first_stage_model\.|vae\.)?encoder\.down\.\d+\.block\.", k) for k in state)


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Only the VAE's tensors of a whole SD checkpoint (``first_stage_model.``/``vae.``), prefix removed."""
    for prefix in ("first_stage_model.", "vae."):
        if any(k.startswith(prefix + "encoder.") for k in state):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def vae_config(state: dict[str, torch.Tensor]) -> dict:
    """AutoencoderKL arguments read from a VAE state dict of either layout (shapes only)."""
    ldm = is_ldm_layout(state)
    block = r"encoder\.down\.(\d+)\.block\.(\d+)\.conv1\.weight" if ldm else \
        r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.conv1\.weight"
    levels: dict[int, set[int]] = {}
    channels: dict[int, int] = {}
    for key, tensor in state.items():
        m = re.fullmatch(block, key)
        if m:
            level, index = int(m.group(1)), int(m.group(2))
            levels.setdefault(level, set()).add(index)
            if index == 0:
                channels[level] = int(tensor.shape[0])
    if not levels or "encoder.conv_in.weight" not in state or "decoder.conv_in.weight" not in state:
        raise LipSyncInputError("vae: the file holds no AutoencoderKL encoder/decoder tensors; give an SD-style VAE "
                                "(.safetensors from ComfyUI's models/vae or a diffusers AutoencoderKL).")
    first = channels[0]
    groups = 32 if first % 32 == 0 else max(g for g in range(1, 33) if first % g == 0)
    n = len(levels)
    attention = "encoder.mid.attn_1.q.weight" in state if ldm else any(
        k.startswith("encoder.mid_block.attentions.0.") for k in state)
    return {
        "in_channels": int(state["encoder.conv_in.weight"].shape[1]),
        "out_channels": int(state["decoder.conv_out.weight"].shape[0]),
        "latent_channels": int(state["decoder.conv_in.weight"].shape[1]),
        "block_out_channels": [channels[i] for i in range(n)],
        "layers_per_block": len(levels[0]),
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "norm_num_groups": groups,
        "mid_block_add_attention": bool(attention),
        "use_quant_conv": "quant_conv.weight" in state,
        "use_post_quant_conv": "post_quant_conv.weight" in state,
        "scaling_factor": SD_SCALING_FACTOR,
    }


def load_sd_vae(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """A diffusers AutoencoderKL from one .safetensors file in the LDM or the diffusers layout (eval mode)."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise LipSyncInputError(f"vae: {path} is not a .safetensors file; only safetensors weights are read.")
    state = _strip_prefix(load_file(str(path)))
    config = vae_config(state)
    if is_ldm_layout(state):
        state = convert_ldm_vae_checkpoint(state, config)
    vae = AutoencoderKL(**config)
    missing, unexpected = vae.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise LipSyncInputError(f"vae: {path} does not match an AutoencoderKL of its own shape ({len(missing)} tensors "
                                f"missing, e.g. {missing[:1]}; {len(unexpected)} unexpected, e.g. {unexpected[:1]}).")
    return vae.to(device).eval()


def downsampling(vae) -> int:
    """The VAE's spatial downsampling factor (8 for SD's four levels)."""
    return int(math.pow(2, len(vae.config.block_out_channels) - 1))
