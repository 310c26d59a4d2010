"""The staged core API (lipsync_core.stages) step by step, with small random models on a real face video.

Each stage is checked on its own contract; the composition is checked against pipeline.lipsync, which
the CLI runs: the stages called one by one give the same frames, bit for bit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lipsync_core import stages
from lipsync_core.media import ArrayFrames
from lipsync_core.pipeline import JobOptions, lipsync, prepare
from lipsync_core.render.frames import FrameRenderer
from lipsync_core.render.settings import RenderSettings
from lipsync_core.style import closed_mouth_params
from lipsync_core.types import FaceAnalysis, LipSyncInputError
from tests.tiny_models import FPS, astronaut_video, speechlike, tiny_models


@pytest.fixture(scope="module")
def models():
    return tiny_models()


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    return astronaut_video()


@pytest.fixture(scope="module")
def analysis(models, video) -> FaceAnalysis:
    source = ArrayFrames(video, FPS)
    track = stages.track(source, models.renderer.config.crop_size, gap_policy="passthrough")
    return FaceAnalysis.of(track, models.mouth)


def test_track_keeps_every_frame_and_reports_progress(models, video):
    seen = []
    source = ArrayFrames(video, FPS)
    track = stages.track(source, 128, progress=lambda d, t: seen.append((d, t)), gap_policy="passthrough")
    assert len(track) == len(video) == source.num_frames and track.fps == FPS
    assert seen[-1] == (len(video), len(video))
    assert not track.usable[5:7].any() and track.usable[[0, 4, 7, 11]].all()


def test_track_stops_before_a_chunk_when_asked(video):
    class Stop(Exception):
        pass

    def stop() -> None:
        raise Stop

    with pytest.raises(Stop):
        stages.track(ArrayFrames(video, FPS), 128, before_chunk=stop)


def test_style_reference_takes_usable_frames_and_names_a_faceless_clip(models, analysis):
    style = stages.style_reference(analysis, speechlike(12 / FPS), models.feature_spec, max_frames=8, source="clip")
    assert style.num_frames == len(style.frame_indices) <= 8
    assert analysis.track.usable[style.frame_indices].all()
    assert np.array_equal(style.mouth_params, analysis.params[style.frame_indices])
    assert style.audio_features.shape == (style.num_frames, models.feature_spec.dims)
    faceless = dataclasses.replace(analysis, track=dataclasses.replace(analysis.track,
                                                                       usable=np.zeros(len(analysis), bool)))
    with pytest.raises(LipSyncInputError, match="^style: no face found in the clip"):
        stages.style_reference(faceless, speechlike(12 / FPS), models.feature_spec, source="clip")


def test_predict_motion_adjustments(models, analysis):
    feats = stages.audio_features(speechlike(12 / FPS), FPS, 12, models.feature_spec)
    plain = stages.predict_motion(models, feats, None)
    assert plain.params.shape == (12, 13) and plain.fps == FPS
    closed = closed_mouth_params(models.mouth)
    shut = stages.predict_motion(models, feats, None, mouth_scale=0.0)
    assert np.allclose(shut.params, closed, atol=1e-5)  # scale 0: the closed mouth in every frame
    double = stages.predict_motion(models, feats, None, mouth_scale=2.0)
    assert np.allclose(double.params - closed, 2 * (plain.params - closed), atol=1e-4)
    quiet = stages.predict_motion(models, dataclasses.replace(feats, silence=np.ones(12, bool)), None,
                                  close_on_silence=True)
    assert np.allclose(quiet.params[1:-1], closed, atol=1e-5)  # silent throughout: closed (edges half-weighted)


def test_render_yields_ordered_chunks_equal_to_one_call(models, analysis, video):
    feats = stages.audio_features(speechlike(12 / FPS), FPS, 12, models.feature_spec)
    motion = stages.predict_motion(models, feats, None)
    settings = RenderSettings(steps=2, chunk_size=4)
    source = ArrayFrames(video, FPS)
    done = []
    chunks = list(stages.render(models, analysis, motion, source, settings=settings,
                                progress=lambda d, t: done.append((d, t))))
    assert [c.indices.tolist() for c in chunks] == [list(range(0, 8)), list(range(8, 12))]  # whole blocks of 8
    assert done == [(8, 12), (12, 12)]
    frames, masks = stages.concat(chunks)
    refs, openness = stages.appearance_references(source, analysis, settings.reference_images,
                                                  models.renderer.config.crop_size)
    whole = FrameRenderer(models, models.codec(), analysis, motion, np.arange(12), refs, settings,
                          reference_openness=openness).render(video, np.arange(12))
    assert np.array_equal(frames, whole[0]) and np.array_equal(masks, whole[1])
    assert np.array_equal(frames[5:7], video[5:7])  # no face: passed through


def test_stages_one_by_one_are_the_whole_job(models, video):
    wave = speechlike(16 / FPS)
    options = JobOptions(settings=RenderSettings(steps=2, chunk_size=8), length_policy="loop")
    outputs = []
    result = lipsync(ArrayFrames(video, FPS), wave, models, lambda f, m: outputs.append(f), style_wave=wave,
                     options=options)
    job = prepare(ArrayFrames(video, FPS), wave, models, style_wave=wave, options=options)
    frames, _ = stages.concat(stages.render(models, job.analysis, job.motion, ArrayFrames(video, FPS),
                                            job.matched.frame_indices, options.settings))
    assert len(frames) == result.num_frames == 16
    assert np.array_equal(frames, np.concatenate(outputs))
    assert np.array_equal(job.motion.params, result.motion.params)


@pytest.fixture(scope="module")
def copy_path_models(models):
    """The tiny models with a renderer that also takes the aligned reference (copy path) and is guided."""
    import torch

    from lipsync_core.models.renderer import LipRenderUNet

    torch.manual_seed(4)
    renderer = LipRenderUNet.from_config({**models.renderer.config, "reference_concat": True,
                                          "motion_dropout": 0.1}).eval()  # fmt: skip
    return dataclasses.replace(models, renderer=renderer)


@pytest.mark.parametrize("which", ["models", "copy_path_models"])
def test_a_render_cache_reuses_the_work_before_the_noise_bit_for_bit(which, request, analysis, video):
    """A seed, sampler or step change with the job's RenderCache denoises only (every block's latents and mouth
    map reused) and gives exactly the frames a render without the cache gives; any chunk size hits the same
    blocks (they are aligned to the output index)."""
    from lipsync_core.render.cache import RenderCache

    models = request.getfixturevalue(which)
    feats = stages.audio_features(speechlike(12 / FPS), FPS, 12, models.feature_spec)
    motion = stages.predict_motion(models, feats, None)
    source = ArrayFrames(video, FPS)

    def render(cache=None, **changes):
        settings = RenderSettings(**{"steps": 2, "chunk_size": 8, "seed": 1, **changes})
        return stages.concat(stages.render(models, analysis, motion, source, settings=settings, cache=cache))

    cache = RenderCache()
    first = render(cache)
    assert cache.stats()["hits"] == 0 and cache.stats()["misses"] == 2 and cache.stats()["blocks"] == 2
    assert 0 < cache.bytes <= cache.max_bytes
    for changes in ({"seed": 2}, {"seed": 2, "chunk_size": 16}, {"sampler": "euler", "steps": 3},
                    {"seed": 1, "chunk_size": 4}, {"guidance": 1.5, "guided_steps": 1.0}):
        hits = cache.hits
        cached, plain = render(cache, **changes), render(**changes)
        assert cache.hits == hits + 2 and cache.misses == 2, changes  # both blocks reused, none encoded again
        assert np.array_equal(cached[0], plain[0]) and np.array_equal(cached[1], plain[1]), changes
    assert np.array_equal(first[0], render()[0])
    assert not np.array_equal(first[0], render(cache, seed=2)[0])  # the seed still decides the noise


def test_a_render_cache_is_bounded_and_never_stale(models, analysis, video):
    """Past its bound a cache keeps no more blocks (those are computed each time, as without it: the same
    frames); another job (motion, precision, render batch) empties it first."""
    from lipsync_core.render.cache import RenderCache

    source = ArrayFrames(video, FPS)
    feats = stages.audio_features(speechlike(12 / FPS), FPS, 12, models.feature_spec)
    motion = stages.predict_motion(models, feats, None)
    other = stages.predict_motion(models, feats, None, mouth_scale=1.5)

    def render(cache=None, motion=motion, **changes):
        settings = RenderSettings(**{"steps": 2, "chunk_size": 4, "seed": 3, **changes})
        return stages.concat(stages.render(models, analysis, motion, source, settings=settings, cache=cache))[0]

    probe = RenderCache()
    render(probe)
    small = RenderCache(max_bytes=probe.bytes - 1)  # room for the first block, not for both
    render(small)
    assert small.stats()["blocks"] == 1 and small.over_budget == 1 and 0 < small.bytes < probe.bytes
    assert np.array_equal(render(small, seed=4), render(seed=4)) and small.hits == 1
    nothing = RenderCache(max_bytes=0)
    assert np.array_equal(render(nothing), render()) and nothing.bytes == 0 and nothing.hits == 0

    cache = RenderCache()
    render(cache)
    for changes in ({"motion": other}, {"precision": "bf16"}, {"render_batch": 4}):
        misses = cache.misses
        assert np.array_equal(render(cache, **changes), render(**changes)), changes
        assert cache.misses > misses, changes  # emptied: computed afresh for the new job
