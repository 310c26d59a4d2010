"""Randomly initialised AutoencoderKLs of Stable Diffusion's shape written as a user would have them: the original
LDM layout (ComfyUI's models/vae) and diffusers' layout. The LDM names are made here from diffusers' (the inverse of
diffusers' own converter), so the test does not depend on the code it checks."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

SD_VAE = {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4,
          "norm_num_groups": 32, "down_block_types": ["DownEncoderBlock2D"] * 4,
          "up_block_types": ["UpDecoderBlock2D"] * 4}
RESNET = {"conv_shortcut": "nin_shortcut"}
ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def sd_shaped_vae(seed: int = 0, **changes) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(**{**SD_VAE, **changes}).eval()


def ldm_name(key: str, levels: int) -> str:
    key = re.sub(r"(encoder|decoder)\.conv_norm_out", r"\1.norm_out", key)
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key)
    key = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                 lambda m: f"decoder.up.{levels - 1 - int(m.group(1))}.upsample.", key)
    key = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2.", key)
    key = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
                 lambda m: f"decoder.up.{levels - 1 - int(m.group(1))}.block.{m.group(2)}.", key)
    key = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m.group(1)) + 1}.", key)
    key = key.replace("mid_block.attentions.0.", "mid.attn_1.")
    for new, old in {**RESNET, **ATTENTION}.items():
        key = key.replace(f".{new}.", f".{old}.")
    return key


def save_ldm(vae: AutoencoderKL, path: Path, prefix: str = "") -> Path:
    levels = len(vae.config.block_out_channels)
    out = {}
    for key, tensor in vae.state_dict().items():
        name = ldm_name(key, levels)
        if ".mid.attn_1." in name and name.endswith(".weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        out[prefix + name] = tensor.contiguous()
    save_file(out, str(path))
    return path


def save_diffusers(vae: AutoencoderKL, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(path))
    return path
