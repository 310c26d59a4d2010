"""The lip-sync nodes' behaviour without a host: real calls on tiny random models and a real face video.

Random weights say nothing about quality; these hold the graph contracts: frame counts, fps and audio
lengths, models loaded once, the modular chain equal to the all-in-one pipeline, a ComfyUI-style VAE
used with the renderer's latent scaling, and clear errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from node_samples import NUM_FRAMES, model_inputs, render_kwargs, sample

from lipsync_core.audio import LENGTH_POLICIES, duration_frames
from lipsync_core.face import FACE_CHOICES, GAP_POLICIES
from lipsync_core.models.attention import get_attention_override
from lipsync_core.render.sampling import SAMPLERS
from lipsync_core.types import MODEL_FILES, LipSyncInputError
from nodes import plumbing
from nodes.audio_nodes import StyleLipSyncAudioFeatures, StyleLipSyncMatchLength
from nodes.lipsync_models import DEMO_CHOICE, codec_for
from nodes.lipsync_models import MODEL_FILES as NODE_MODEL_FILES
from nodes.load_models import StyleLipSyncLoadModels
from nodes.model_cache import MODEL_CACHE
from nodes.motion_nodes import StyleLipSyncPredictMotion, StyleLipSyncPreviewMotion
from nodes.render_nodes import StyleLipSyncLipSync, StyleLipSyncRender
from tests.tiny_models import FPS


def test_node_choices_are_the_cores():
    assert set(plumbing.SAMPLERS) == set(SAMPLERS)
    assert set(plumbing.FACE_CHOICES) == set(FACE_CHOICES) and set(plumbing.GAP_POLICIES) == set(GAP_POLICIES)
    assert set(plumbing.LENGTH_POLICIES) == set(LENGTH_POLICIES)
    assert NODE_MODEL_FILES == MODEL_FILES


def test_models_load_once_and_are_shared():
    first = StyleLipSyncLoadModels().load(**model_inputs())[0]
    loads = MODEL_CACHE.loads()
    again = StyleLipSyncLoadModels().load(**model_inputs())[0]
    assert MODEL_CACHE.loads() == loads
    assert again.motion is first.motion and again.renderer is first.renderer and again.mouth is first.mouth
    assert first.feature_spec.kind == "logmel"


def test_missing_demo_weights_say_where_to_put_files(monkeypatch, tmp_path):
    monkeypatch.setattr("nodes.lipsync_models.DEMO_FOLDER", tmp_path)
    with pytest.raises(LipSyncInputError, match="motion_model: the demo weights are not installed"):
        StyleLipSyncLoadModels().load(DEMO_CHOICE, DEMO_CHOICE, DEMO_CHOICE, DEMO_CHOICE)


def test_match_length_keeps_the_audio_rate_and_channels_and_reindexes_the_track():
    s = sample()
    audio_frames = duration_frames(s["audio"]["waveform"].shape[-1], 22050, FPS)
    assert audio_frames > NUM_FRAMES
    images, audio, count, track = StyleLipSyncMatchLength().match(
        s["images"], s["audio"], 0.0, "ping_pong", video_info={"loaded_fps": FPS}, track=s["track"]
    )
    assert count == audio_frames == len(images) == len(track)
    assert audio["sample_rate"] == 22050 and audio["waveform"].shape == (1, 2, round(count / FPS * 22050))
    assert torch.equal(images[NUM_FRAMES], s["images"][NUM_FRAMES - 2])  # ping-pong: ..., 8, 9, 8, ...
    assert np.array_equal(track.landmarks[NUM_FRAMES], s["track"].landmarks[NUM_FRAMES - 2])
    images, audio, count, _ = StyleLipSyncMatchLength().match(s["images"], s["audio"], FPS, "trim_to_video")
    assert count == NUM_FRAMES and audio["waveform"].shape[-1] == round(NUM_FRAMES / FPS * 22050)
    with pytest.raises(LipSyncInputError, match="fps or video_info: no frame rate"):
        StyleLipSyncMatchLength().match(s["images"], s["audio"], 0.0, "loop")


def test_features_follow_the_images_and_the_style_reference_the_track():
    s = sample()
    assert len(s["features"]) == NUM_FRAMES and s["features"].fps == FPS
    feats = StyleLipSyncAudioFeatures().features(s["models"], FPS, 0, audio=s["audio"])[0]
    assert len(feats) == duration_frames(s["audio"]["waveform"].shape[-1], 22050, FPS)
    assert len(s["style"].mouth_params) == len(s["style"].audio_features) <= NUM_FRAMES
    assert s["track"].usable.sum() == NUM_FRAMES - 1  # one face-less frame, passed through
    with pytest.raises(LipSyncInputError, match="audio: connect an AUDIO"):
        StyleLipSyncAudioFeatures().features(s["models"], FPS, 0)


def test_predict_motion_sends_the_view_and_honours_the_artist_controls():
    s = sample()
    out = StyleLipSyncPredictMotion().predict(s["models"], s["features"], 1.0, 1.0, False, style=s["style"])
    [view] = out["ui"]["stylelipsync_motion"]
    motion = out["result"][0]
    assert len(view["opening"]) == len(view["envelope"]) == NUM_FRAMES and view["fps"] == FPS
    assert view["attention"]["rows"] == NUM_FRAMES and view["attention"]["cols"] == len(s["style"].mouth_params)
    closed = StyleLipSyncPredictMotion().predict(s["models"], s["features"], 1.0, 0.0, False, style=s["style"])
    params = closed["result"][0].params
    assert np.allclose(params, params[0], atol=1e-5) and not np.allclose(motion.params, motion.params[0], atol=1e-3)
    assert get_attention_override() is None


def test_preview_draws_lips_only_on_frames_with_a_face():
    s = sample()
    overlay, attention = StyleLipSyncPreviewMotion().preview(s["models"], s["images"], s["track"], s["motion"])
    changed = (overlay != s["images"]).flatten(1).any(1).numpy()
    assert changed.tolist() == s["track"].usable.tolist()
    assert attention.shape[0] == 1 and attention.shape[-1] == 3 and attention.std() > 0.05


def test_render_keeps_frames_and_pixels_outside_the_mask_and_chunking_never_changes_it():
    s = sample()
    images, mask = StyleLipSyncRender().render(**render_kwargs())
    assert images.shape == s["images"].shape and mask.shape == s["images"].shape[:3]
    outside = (mask == 0)[..., None].expand_as(images)
    assert torch.equal(images[outside], s["images"][outside])
    assert (images - s["images"]).abs().amax() > 0.01
    gap = np.flatnonzero(~s["track"].usable)
    assert torch.equal(images[gap], s["images"][gap]) and mask[gap].max() == 0
    again, _ = StyleLipSyncRender().render(**render_kwargs(chunk_size=3))
    assert torch.allclose(again, images, atol=1e-5)
    other, _ = StyleLipSyncRender().render(**render_kwargs(seed=5))
    assert not torch.allclose(other, images, atol=1e-3)


def test_modular_chain_renders_what_the_all_in_one_node_renders():
    """Same frames, 16 kHz audio as long as the video, the video as its own style: the two paths agree."""
    s = sample()
    from lipsync_core.audio import make_audio
    from tests.tiny_models import speechlike

    audio = make_audio(speechlike(NUM_FRAMES / FPS))
    kwargs = {"steps": 2, "seed": 3, "chunk_size": 4, "sampler": "ddim"}
    whole, whole_audio, whole_mask, fps = StyleLipSyncLipSync().lipsync(
        s["models"], s["images"], audio, FPS, "trim_to_video", 1.0, video_audio=audio, **kwargs
    )
    from nodes.face_nodes import StyleLipSyncTrackFaces
    from nodes.motion_nodes import StyleLipSyncStyleReference

    track = StyleLipSyncTrackFaces().track(
        s["images"], FPS, "torch", "largest", "interpolate", 0.5, models=s["models"]
    )[0]
    style = StyleLipSyncStyleReference().reference(s["models"], 256, 0.0, video_track=track, video_audio=audio)[0]
    feats = StyleLipSyncAudioFeatures().features(s["models"], FPS, 0, audio=audio, images=s["images"])[0]
    motion = StyleLipSyncPredictMotion().predict(s["models"], feats, 1.0, 1.0, False, style=style)["result"][0]
    chain, chain_mask = StyleLipSyncRender().render(
        s["models"], s["images"], track, motion, color_match=0.5, reference_images=3, **kwargs
    )
    assert fps == FPS and whole.shape == chain.shape and whole_audio["waveform"].shape[-1] == NUM_FRAMES * 640
    assert (whole - chain).abs().amax() < 0.02, (whole - chain).abs().amax()
    assert (whole_mask - chain_mask).abs().amax() < 0.02


class ComfyStyleVAE:
    """The interface of ComfyUI's comfy.sd.VAE (encode [B,H,W,C] 0..1 -> raw latent; decode back), over a
    diffusers AutoencoderKL: what the render node's VAE input receives."""

    def __init__(self, vae: torch.nn.Module, downscale_ratio: int = 4) -> None:
        self.vae = vae
        self.latent_channels = int(vae.config.latent_channels)
        self.downscale_ratio = downscale_ratio

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(pixels.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return ((self.vae.decode(latents).sample + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)


def test_a_comfy_vae_renders_like_the_renderers_own():
    s = sample()
    own, _ = StyleLipSyncRender().render(**render_kwargs())
    comfy_vae = ComfyStyleVAE(s["models"].vae.module)
    via_comfy, _ = StyleLipSyncRender().render(**render_kwargs(vae=comfy_vae))
    assert torch.allclose(own, via_comfy, atol=1e-4)
    with pytest.raises(LipSyncInputError, match="downsamples by 8"):
        codec_for(s["models"], ComfyStyleVAE(s["models"].vae.module, downscale_ratio=8))
    comfy_vae.latent_channels = 16
    with pytest.raises(LipSyncInputError, match="16-channel latents"):
        codec_for(s["models"], comfy_vae)


def test_render_refuses_mismatched_lengths():
    s = sample()
    with pytest.raises(LipSyncInputError, match="track: it covers 10 frames but images has 9"):
        StyleLipSyncRender().render(**render_kwargs(images=s["images"][:9]))
    from nodes.plumbing import track_frames

    with pytest.raises(LipSyncInputError, match="motion: 10 frames for 9 images; put StyleLipSync Match Length"):
        StyleLipSyncRender().render(**render_kwargs(images=s["images"][:9], track=track_frames(s["track"], range(9))))


def test_audio_encoder_output_is_aligned_but_refused_by_a_logmel_model():
    """Core AUDIO_ENCODER_OUTPUT (50 Hz frames) is read; a motion model trained on log-mel says so plainly."""
    s = sample()
    samples = 16000 * NUM_FRAMES // 25
    output = {"encoded_audio": torch.randn(1, samples // 320, 24), "audio_samples": samples}
    from lipsync_core.audio import features_from_audio_encoder_output

    feats = features_from_audio_encoder_output(output, FPS, NUM_FRAMES)
    assert feats.features.shape == (NUM_FRAMES, 24)
    with pytest.raises(LipSyncInputError, match="audio_encoder_output: features are .* but the model was trained on"):
        StyleLipSyncAudioFeatures().features(s["models"], FPS, 0, audio=s["audio"], audio_encoder_output=output,
                                             images=s["images"])  # fmt: skip
