"""The whole job on in-memory frames, with small randomly initialised models.

Random weights say nothing about quality; these tests hold the pipeline's contracts:
frame count, pass-through of face-less frames, untouched pixels outside the mask,
same seed -> same frames, and chunk size never changing the result.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from diffusers import AutoencoderKL

from lipsync_core.audio import logmel_spec
from lipsync_core.models.motion import LipMotionTransformer
from lipsync_core.models.renderer import LipRenderUNet
from lipsync_core.motion import MouthModel
from lipsync_core.pipeline import ArrayFrames, LipSyncModels, RenderSettings, lipsync
from lipsync_core.render.codec import DiffusersVAECodec
from lipsync_core.types import LipSyncInputError
from tests.face_meshes import identity_mesh, talking_meshes

FPS = 25.0


@pytest.fixture(scope="module")
def models() -> LipSyncModels:
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
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
        motion_hidden_dim=32, motion_code_dim=32, norm_groups=8,
    ).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32, 32), norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    ).eval()
    return LipSyncModels(motion=motion, renderer=renderer, mouth=mouth, vae=vae)


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    """12 frames of the astronaut drifting slowly; frames 5-6 show no face."""
    base = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(12):
        m = np.float32([[1, 0, i * 0.7], [0, 1, -i * 0.4]])
        frames.append(cv2.warpAffine(base, m, (256, 256), borderMode=cv2.BORDER_REFLECT))
    frames = np.stack(frames)
    frames[5:7] = 90  # a flat grey card: no face
    return frames


def _speechlike(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3.0 * t))
    return (0.2 * envelope * np.sin(2 * np.pi * 180 * t * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t)))).astype(np.float32)


def _run(models, video, chunk_size=4, seed=0, wave_seconds=12 / FPS):
    outputs, masks = [], []
    result = lipsync(
        ArrayFrames(video, FPS), _speechlike(wave_seconds), models,
        lambda f, m: (outputs.append(f), masks.append(m)),
        style_wave=_speechlike(12 / FPS), settings=RenderSettings(steps=3, chunk_size=chunk_size, seed=seed),
        tracker_options={"gap_policy": "passthrough"},
    )
    return result, np.concatenate(outputs), np.concatenate(masks)


def test_frames_in_equal_frames_out_and_faceless_frames_pass_through(models, video):
    result, out, masks = _run(models, video)
    assert out.shape == video.shape and out.dtype == video.dtype and result.num_frames == 12
    assert np.array_equal(out[5:7], video[5:7])  # no face: untouched
    assert not result.track.usable[5:7].any() and result.track.usable[[0, 4, 7, 11]].all()
    assert any("passed through" in note for note in result.notes)
    for i in (0, 8):
        outside = masks[i] == 0
        assert np.array_equal(out[i][outside], video[i][outside])  # only the masked region changes
        assert np.abs(out[i].astype(int) - video[i]).max() > 0  # and something was repainted


def test_same_seed_same_frames_and_chunking_never_changes_the_result(models, video):
    _, a, _ = _run(models, video, chunk_size=4)
    _, b, _ = _run(models, video, chunk_size=16)
    _, c, _ = _run(models, video, chunk_size=4)
    assert np.array_equal(a, b) and np.array_equal(a, c)
    _, d, _ = _run(models, video, chunk_size=4, seed=1)
    assert not np.array_equal(a, d)


def test_longer_audio_loops_the_video_to_its_length(models, video):
    outputs = []
    result = lipsync(
        ArrayFrames(video, FPS), _speechlike(20 / FPS), models, lambda f, m: outputs.append(f),
        settings=RenderSettings(steps=2, chunk_size=8), length_policy="loop",
    )
    assert result.num_frames == 20 and sum(len(o) for o in outputs) == 20
    assert len(result.wave) == round(20 * 16000 / FPS)


def test_vae_with_other_latent_channels_is_refused(models):
    other = AutoencoderKL(latent_channels=16, block_out_channels=(16,), norm_num_groups=8)
    with pytest.raises(LipSyncInputError, match="16-channel latents"):
        models.codec(DiffusersVAECodec(other, 1.0))
