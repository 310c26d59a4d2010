"""The whole job on in-memory frames, with small randomly initialised models.

Random weights say nothing about quality; these tests hold the pipeline's contracts:
frame count, pass-through of face-less frames, untouched pixels outside the mask,
same seed -> same frames, and chunk size never changing the result.
"""

from __future__ import annotations

import numpy as np
import pytest
from diffusers import AutoencoderKL

from lipsync_core.media import ArrayFrames
from lipsync_core.pipeline import JobOptions, LipSyncModels, RenderSettings, lipsync
from lipsync_core.render.codec import DiffusersVAECodec
from lipsync_core.types import LipSyncInputError
from tests.tiny_models import FPS, astronaut_video, speechlike, tiny_models


@pytest.fixture(scope="module")
def models() -> LipSyncModels:
    return tiny_models()


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    return astronaut_video()


def _run(models, video, chunk_size=4, seed=0, wave_seconds=12 / FPS):
    outputs, masks = [], []
    result = lipsync(
        ArrayFrames(video, FPS), speechlike(wave_seconds), models,
        lambda f, m: (outputs.append(f), masks.append(m)),
        style_wave=speechlike(12 / FPS),
        options=JobOptions(settings=RenderSettings(steps=3, chunk_size=chunk_size, seed=seed),
                           tracker_options={"gap_policy": "passthrough"}),
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
        ArrayFrames(video, FPS), speechlike(20 / FPS), models, lambda f, m: outputs.append(f),
        options=JobOptions(settings=RenderSettings(steps=2, chunk_size=8), length_policy="loop"),
    )
    assert result.num_frames == 20 and sum(len(o) for o in outputs) == 20
    assert len(result.wave) == round(20 * 16000 / FPS)


def test_vae_with_other_latent_channels_is_refused(models):
    other = AutoencoderKL(latent_channels=16, block_out_channels=(16,), norm_num_groups=8)
    with pytest.raises(LipSyncInputError, match="16-channel latents"):
        models.codec(DiffusersVAECodec(other, 1.0))


def test_node_render_defaults_are_the_pipeline_defaults():
    from StyleLipSync.nodes import NODE_CLASS_MAPPINGS

    defaults = RenderSettings()
    for node_id in ("StyleLipSyncRender", "StyleLipSyncLipSync"):
        widgets = NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()["required"]
        for name, value in (("sampler", defaults.sampler), ("steps", defaults.steps), ("seed", defaults.seed),
                            ("chunk_size", defaults.chunk_size)):
            assert widgets[name][1]["default"] == value, (node_id, name)


def test_video_file_frames_serve_any_order_and_hold_only_what_was_asked(tmp_path):
    from lipsync_core.media import VideoFileFrames, VideoWriter, read_video

    frames = (np.arange(90, dtype=np.uint8)[:, None, None, None] * 2 + np.zeros((1, 32, 48, 3), np.uint8))
    with VideoWriter(tmp_path / "ramp.mp4", 30.0) as writer:
        writer.write(frames)
    decoded, _ = read_video(tmp_path / "ramp.mp4")
    source = VideoFileFrames(tmp_path / "ramp.mp4")
    spread = np.array([3, 44, 88])  # reference frames across the whole video: only these are kept
    assert np.array_equal(source.get(spread), decoded[spread])
    assert len(source._pending) <= 16  # not the 86 frames in between
    for chunk in ([0, 1, 2, 3], [4, 5, 6, 7], [7, 6, 5, 4], [2, 1, 0], [80, 81, 82]):  # ping-pong, loop, jump
        assert np.array_equal(source.get(np.array(chunk)), decoded[chunk])


def test_openings_of_reference_crops_given_without_their_track(models, video):
    """A style node's crops come without landmarks: their mouth openings are measured by tracking them."""
    from lipsync_core.face import track_faces, warp_to_crops
    from lipsync_core.render.frames import crop_openness

    track = track_faces(video[:2], fps=FPS, crop_size=128)
    crops = warp_to_crops(video[:2], track, 128)
    blank = np.full((1, 128, 128, 3), 0.4, np.float32)  # no face in it: it counts as the others' median
    opening = crop_openness(np.concatenate([crops, blank]), models.mouth)
    assert opening.shape == (3,) and np.isfinite(opening).all() and (opening >= 0).all()
    assert opening[2] == pytest.approx(np.median(opening[:2]))
