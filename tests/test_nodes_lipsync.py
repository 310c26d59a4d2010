"""The lip-sync nodes' behaviour without a host: real calls on tiny random models and a real face video.

Random weights say nothing about quality; these hold the graph contracts: frame counts, fps and audio
lengths, models loaded once, the modular chain equal to the all-in-one pipeline, a ComfyUI-style VAE
used with the renderer's latent scaling, and clear errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from node_samples import NUM_FRAMES, model_inputs, render_kwargs, run, sample
from StyleLipSync.nodes import NODE_CLASS_MAPPINGS
from StyleLipSync.nodes.models import DEMO_CHOICE, MODEL_CACHE, codec_for
from StyleLipSync.nodes.sockets import track_frames

from lipsync_core.audio import duration_frames
from lipsync_core.models.attention import get_attention_override
from lipsync_core.render.sampling import SAMPLERS
from lipsync_core.types import FACE_CHOICES, GAP_POLICIES, LENGTH_POLICIES, SAMPLER_NAMES, LipSyncInputError
from tests.tiny_models import FPS


def _choices(node_id: str, name: str) -> list:
    spec = NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
    entry = {**spec["required"], **spec.get("optional", {})}[name]
    return entry[1]["options"]


def test_node_choices_are_the_cores():
    assert _choices("StyleLipSyncRender", "sampler") == list(SAMPLER_NAMES) and set(SAMPLERS) == set(SAMPLER_NAMES)
    assert _choices("StyleLipSyncTrackFaces", "face_choice") == list(FACE_CHOICES)
    assert _choices("StyleLipSyncTrackFaces", "no_face") == list(GAP_POLICIES)
    assert _choices("StyleLipSyncLipSync", "length_policy") == list(LENGTH_POLICIES)
    assert _choices("StyleLipSyncMatchLength", "policy") == list(LENGTH_POLICIES)


def test_models_load_once_and_are_shared():
    first = run("StyleLipSyncLoadModels", **model_inputs())[0]
    loads = MODEL_CACHE.loads()
    again = run("StyleLipSyncLoadModels", **model_inputs())[0]
    assert MODEL_CACHE.loads() == loads
    assert again.motion is first.motion and again.renderer is first.renderer and again.mouth is first.mouth
    assert first.feature_spec.kind == "logmel"


def test_missing_demo_weights_say_where_to_put_files(monkeypatch, tmp_path):
    monkeypatch.setattr("StyleLipSync.nodes.models.DEMO_FOLDER", tmp_path)
    with pytest.raises(LipSyncInputError, match="motion_model: the demo weights are not installed"):
        run("StyleLipSyncLoadModels", DEMO_CHOICE, DEMO_CHOICE, DEMO_CHOICE, DEMO_CHOICE)


def test_match_length_keeps_the_audio_rate_and_channels_and_reindexes_the_track():
    s = sample()
    audio_frames = duration_frames(s["audio"]["waveform"].shape[-1], 22050, FPS)
    assert audio_frames > NUM_FRAMES
    images, audio, count, track = run("StyleLipSyncMatchLength",
        s["images"], s["audio"], 0.0, "ping_pong", video_info={"loaded_fps": FPS}, track=s["track"]
    )
    assert count == audio_frames == len(images) == len(track)
    assert audio["sample_rate"] == 22050 and audio["waveform"].shape == (1, 2, round(count / FPS * 22050))
    assert torch.equal(images[NUM_FRAMES], s["images"][NUM_FRAMES - 2])  # ping-pong: ..., 8, 9, 8, ...
    assert np.array_equal(track.landmarks[NUM_FRAMES], s["track"].landmarks[NUM_FRAMES - 2])
    images, audio, count, _ = run("StyleLipSyncMatchLength", s["images"], s["audio"], FPS, "trim_to_video")
    assert count == NUM_FRAMES and audio["waveform"].shape[-1] == round(NUM_FRAMES / FPS * 22050)
    with pytest.raises(LipSyncInputError, match="fps or video_info: no frame rate"):
        run("StyleLipSyncMatchLength", s["images"], s["audio"], 0.0, "loop")


def test_features_follow_the_images_and_the_style_reference_the_track():
    s = sample()
    assert len(s["features"]) == NUM_FRAMES and s["features"].fps == FPS
    feats = run("StyleLipSyncAudioFeatures", s["models"], FPS, 0, audio=s["audio"])[0]
    assert len(feats) == duration_frames(s["audio"]["waveform"].shape[-1], 22050, FPS)
    assert len(s["style"].mouth_params) == len(s["style"].audio_features) <= NUM_FRAMES
    assert s["track"].usable.sum() == NUM_FRAMES - 1  # one face-less frame, passed through
    with pytest.raises(LipSyncInputError, match="audio: connect an AUDIO"):
        run("StyleLipSyncAudioFeatures", s["models"], FPS, 0)


def test_predict_motion_sends_the_view_and_honours_the_artist_controls():
    s = sample()
    out = run("StyleLipSyncPredictMotion", s["models"], s["features"], 1.0, 1.0, False, style=s["style"])
    [view] = out.ui["stylelipsync_motion"]
    motion = out[0]
    assert len(view["opening"]) == len(view["envelope"]) == NUM_FRAMES and view["fps"] == FPS
    assert view["attention"]["rows"] == NUM_FRAMES and view["attention"]["cols"] == len(s["style"].mouth_params)
    closed = run("StyleLipSyncPredictMotion", s["models"], s["features"], 1.0, 0.0, False, style=s["style"])
    params = closed[0].params
    assert np.allclose(params, params[0], atol=1e-5) and not np.allclose(motion.params, motion.params[0], atol=1e-3)
    assert get_attention_override() is None


def test_preview_draws_lips_only_on_frames_with_a_face():
    s = sample()
    overlay, attention = run("StyleLipSyncPreviewMotion", s["models"], s["images"], s["track"], s["motion"])
    changed = (overlay != s["images"]).flatten(1).any(1).numpy()
    assert changed.tolist() == s["track"].usable.tolist()
    assert attention.shape[0] == 1 and attention.shape[-1] == 3 and attention.std() > 0.05


def test_render_keeps_frames_and_pixels_outside_the_mask_and_chunking_never_changes_it():
    s = sample()
    images, mask = run("StyleLipSyncRender", **render_kwargs())
    assert images.shape == s["images"].shape and mask.shape == s["images"].shape[:3]
    outside = (mask == 0)[..., None].expand_as(images)
    assert torch.equal(images[outside], s["images"][outside])
    assert (images - s["images"]).abs().amax() > 0.01
    gap = np.flatnonzero(~s["track"].usable)
    assert torch.equal(images[gap], s["images"][gap]) and mask[gap].max() == 0
    again, _ = run("StyleLipSyncRender", **render_kwargs(chunk_size=3))
    assert torch.allclose(again, images, atol=1e-5)
    other, _ = run("StyleLipSyncRender", **render_kwargs(seed=5))
    assert not torch.allclose(other, images, atol=1e-3)


def test_modular_chain_renders_what_the_all_in_one_node_renders():
    """Same frames, 16 kHz audio as long as the video, the video as its own style: the two paths agree."""
    s = sample()
    from lipsync_core.audio import make_audio
    from tests.tiny_models import speechlike

    audio = make_audio(speechlike(NUM_FRAMES / FPS))
    kwargs = {"steps": 2, "seed": 3, "chunk_size": 4, "sampler": "ddim"}
    whole, whole_audio, whole_mask, fps, _ = run("StyleLipSyncLipSync", s["models"], FPS, "trim_to_video", 1.0,
                                                 images=s["images"], audio=audio, video_audio=audio, **kwargs)
    track = run("StyleLipSyncTrackFaces",
        s["images"], FPS, "torch", "largest", "interpolate", 0.5, models=s["models"]
    )[0]
    style = run("StyleLipSyncStyleReference", s["models"], 256, 0.0, video_track=track, video_audio=audio)[0]
    feats = run("StyleLipSyncAudioFeatures", s["models"], FPS, 0, audio=audio, images=s["images"])[0]
    motion = run("StyleLipSyncPredictMotion", s["models"], feats, 1.0, 1.0, False, style=style)[0]
    chain, chain_mask = run("StyleLipSyncRender",
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
    own, _ = run("StyleLipSyncRender", **render_kwargs())
    comfy_vae = ComfyStyleVAE(s["models"].vae.module)
    via_comfy, _ = run("StyleLipSyncRender", **render_kwargs(vae=comfy_vae))
    assert torch.allclose(own, via_comfy, atol=1e-4)
    with pytest.raises(LipSyncInputError, match="downsamples by 8"):
        codec_for(s["models"], ComfyStyleVAE(s["models"].vae.module, downscale_ratio=8))
    comfy_vae.latent_channels = 16
    with pytest.raises(LipSyncInputError, match="16-channel latents"):
        codec_for(s["models"], comfy_vae)


def test_render_refuses_mismatched_lengths():
    s = sample()
    with pytest.raises(LipSyncInputError, match="track: it covers 10 frames but images has 9"):
        run("StyleLipSyncRender", **render_kwargs(images=s["images"][:9]))
    with pytest.raises(LipSyncInputError, match="motion: 10 frames for 9 images; put StyleLipSync Match Length"):
        run("StyleLipSyncRender", **render_kwargs(images=s["images"][:9], track=track_frames(s["track"], range(9))))


def test_audio_encoder_output_is_aligned_but_refused_by_a_logmel_model():
    """Core AUDIO_ENCODER_OUTPUT (50 Hz frames) is read; a motion model trained on log-mel says so plainly."""
    s = sample()
    samples = 16000 * NUM_FRAMES // 25
    output = {"encoded_audio": torch.randn(1, samples // 320, 24), "audio_samples": samples}
    from lipsync_core.audio import features_from_audio_encoder_output

    feats = features_from_audio_encoder_output(output, FPS, NUM_FRAMES)
    assert feats.features.shape == (NUM_FRAMES, 24)
    with pytest.raises(LipSyncInputError, match="audio_encoder_output: features are .* but the model was trained on"):
        run("StyleLipSyncAudioFeatures", s["models"], FPS, 0, audio=s["audio"], audio_encoder_output=output,
                                             images=s["images"])  # fmt: skip


def test_a_seed_change_on_the_all_in_one_node_reuses_the_work_before_rendering():
    """Same input objects (as ComfyUI hands them when nothing upstream ran again), another seed: tracking,
    analysis and stage 1 are reused (a memo hit), and the render's work before the noise (its RenderCache);
    the frames are denoised again, and the first seed again gives the first frames exactly; another style
    strength, or an input changed in place, is a miss. Under inference mode, as the host runs nodes (no version
    counters)."""
    from StyleLipSync.nodes.models import PREPARED, render_reuse

    s = sample()
    call = {"models": s["models"], "fps": FPS, "length_policy": "trim_to_video", "style_strength": 0.9,
            "sampler": "ddim", "steps": 2, "seed": 1, "chunk_size": 8}  # fmt: skip
    with torch.inference_mode():
        images, audio = s["images"].clone(), {**s["audio"]}
        first = run("StyleLipSyncLipSync", images=images, audio=audio, video_audio=audio, **call)
        hits, misses = PREPARED.hits, PREPARED.misses
        reused = render_reuse()["hits"]
        second = run("StyleLipSyncLipSync", images=images, audio=audio, video_audio=audio, **{**call, "seed": 2})
        assert (PREPARED.hits, PREPARED.misses) == (hits + 1, misses)
        assert render_reuse()["hits"] > reused  # the crops' latents and mouth maps were not computed again
        assert not torch.equal(first[0], second[0]) and first[0].shape == second[0].shape
        again = run("StyleLipSyncLipSync", images=images, audio=audio, video_audio=audio, **call)
        assert torch.equal(first[0], again[0]) and torch.equal(first[2], again[2])  # reuse changes no pixel
        run("StyleLipSyncLipSync", images=images, audio=audio, video_audio=audio, **{**call, "style_strength": 0.8})
        assert PREPARED.misses == misses + 1
    images = s["images"].clone()
    run("StyleLipSyncLipSync", images=images, audio=audio, video_audio=audio, **call)
    misses = PREPARED.misses
    images[0] += 0.01  # changed in place: the same object, another picture
    run("StyleLipSyncLipSync", images=images, audio=audio, video_audio=audio, **call)
    assert PREPARED.misses == misses + 1


def test_the_all_in_one_node_takes_a_core_video_and_gives_one():
    """A core VIDEO in (frames, fps and its own sound, the style reference) instead of images + fps +
    video_audio: the same frames out as those inputs give; a VIDEO without sound still runs (generic style)."""
    from comfy_api.latest import InputImpl, Types

    from lipsync_core.media import fps_fraction

    s = sample()
    call = {"models": s["models"], "fps": 0.0, "length_policy": "trim_to_video", "style_strength": 1.0,
            "sampler": "ddim", "steps": 2, "seed": 3, "chunk_size": 8}  # fmt: skip
    video = InputImpl.VideoFromComponents(Types.VideoComponents(images=s["images"], audio=s["audio"],
                                                                frame_rate=fps_fraction(FPS)))
    from_video = run("StyleLipSyncLipSync", video=video, audio=s["audio"], **call)
    from_parts = run("StyleLipSyncLipSync", images=s["images"], audio=s["audio"], video_audio=s["audio"],
                     **{**call, "fps": FPS})
    assert torch.equal(from_video[0], from_parts[0]) and from_video[3] == FPS
    parts = from_video[4].get_components()
    assert torch.equal(parts.images, from_video[0]) and float(parts.frame_rate) == FPS
    assert parts.audio["waveform"].shape[-1] == round(NUM_FRAMES / FPS * 22050)
    silent = InputImpl.VideoFromComponents(Types.VideoComponents(images=s["images"], audio=None,
                                                                 frame_rate=fps_fraction(FPS)))
    out = run("StyleLipSyncLipSync", video=silent, audio=s["audio"], **call)
    assert out[0].shape == s["images"].shape
    with pytest.raises(LipSyncInputError, match="^images: not connected"):
        run("StyleLipSyncLipSync", audio=s["audio"], **call)
