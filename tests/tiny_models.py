"""Small randomly initialised models and a real-face video for pipeline, CLI and node tests.

Random weights say nothing about quality; they let tests hold the pipeline's contracts
(frame counts, pass-through, determinism, error messages) in seconds.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import skimage.data
import torch
from diffusers import AutoencoderKL

from lipsync_core.audio import logmel_spec
from lipsync_core.models.bundle import LipSyncModels
from lipsync_core.models.io import save_model
from lipsync_core.models.motion import LipMotionTransformer
from lipsync_core.models.renderer import LipRenderUNet
from lipsync_core.motion import MouthModel
from lipsync_core.render.conditioning import MOUTH_MAP_CHANNELS
from lipsync_core.types import MODEL_FILES
from tests.face_meshes import identity_mesh, talking_meshes

FPS = 25.0


def tiny_models(seed: int = 0) -> LipSyncModels:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 3)
    people = [identity_mesh(rng) for _ in range(3)]
    mouth = MouthModel.fit([talking_meshes(120, seed=i, person=p)["landmarks"] for i, p in enumerate(people)])
    spec = logmel_spec()
    motion = LipMotionTransformer(
        audio_dim=spec.dims, d_model=32, num_heads=4, decoder_layers=1, audio_encoder_layers=1,
        lip_encoder_layers=1, ff_dim=64, feature_spec=spec.to_dict(),
    ).eval()
    renderer = LipRenderUNet(
        latent_channels=4, latent_size=16, crop_size=64, block_out_channels=(32, 64),
        cross_attention_levels=(False, True), attention_head_dim=16, identity_dim=mouth.identity_dim,
        motion_hidden_dim=32, motion_code_dim=32, norm_groups=8, mouth_map_channels=MOUTH_MAP_CHANNELS,
    ).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32, 32), norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    ).eval()
    return LipSyncModels(motion=motion, renderer=renderer, mouth=mouth, vae=vae)


def save_models(models: LipSyncModels, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_model(models.motion, folder / MODEL_FILES["motion"])
    save_model(models.renderer, folder / MODEL_FILES["renderer"])
    save_model(models.vae, folder / MODEL_FILES["vae"])
    models.mouth.save(folder / MODEL_FILES["mouth_model"])
    return folder


def astronaut_video(num_frames: int = 12, size: int = 256, gap: tuple[int, int] = (5, 7)) -> np.ndarray:
    """The astronaut photo drifting slowly, uint8 [T, size, size, 3]; frames gap[0]..gap[1]-1 show no face."""
    base = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(num_frames):
        m = np.float32([[1, 0, i * 0.7], [0, 1, -i * 0.4]])
        frames.append(cv2.warpAffine(base, m, (size, size), borderMode=cv2.BORDER_REFLECT))
    frames = np.stack(frames)
    frames[gap[0] : gap[1]] = 90  # a flat grey card: no face
    return frames


def speechlike(seconds: float, rate: int = 16000) -> np.ndarray:
    """A voiced tone with a 3 Hz syllable envelope (no espeak needed)."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3.0 * t))
    return (0.2 * envelope * np.sin(2 * np.pi * 180 * t * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t)))).astype(np.float32)
