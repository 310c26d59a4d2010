"""The renderer's frozen CPU graph (lipsync_core.render.traced): the same maths as the eager module, made only
when asked or earned, one graph per kind of input, remade when the weights change, never where it would not be
the same computation; a render through it stays independent of the chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lipsync_core import stages
from lipsync_core.media import ArrayFrames
from lipsync_core.models.renderer import LipRenderUNet
from lipsync_core.render import traced
from lipsync_core.render.settings import RenderSettings
from lipsync_core.types import FaceAnalysis
from tests.tiny_models import FPS, astronaut_video, speechlike, tiny_models


def copy_path_renderer() -> LipRenderUNet:
    """A small renderer with every optional context input (masked latent, copy path, mouth map)."""
    torch.manual_seed(1)
    return LipRenderUNet(latent_channels=4, latent_size=16, crop_size=64, block_out_channels=(16, 32),
                         cross_attention_levels=(False, True), attention_head_dim=8, identity_dim=4,
                         motion_hidden_dim=16, motion_code_dim=16, norm_groups=4, use_masked_latent=True,
                         reference_concat=True, mouth_map_channels=2, motion_dropout=0.1).eval()


def inputs(renderer: LipRenderUNet, batch: int) -> tuple[tuple, dict]:
    g = torch.Generator().manual_seed(batch)
    shape = (batch, 4, 16, 16)
    sample = torch.randn(shape, generator=g)
    motion = torch.randn(batch, renderer.config.motion_window, renderer.motion_dim, generator=g)
    refs = renderer.encode_reference(torch.randn(1, 3, 4, 16, 16, generator=g))
    context = {"masked_latent": torch.randn(shape, generator=g), "reference_latent": torch.randn(shape, generator=g),
               "mouth_map": torch.rand(batch, 2, 16, 16, generator=g)}
    return (sample, torch.full((batch,), 700), motion), {"reference_features": refs, **context}


def test_the_graph_computes_what_the_eager_module_does_for_any_batch_and_guidance():
    renderer = copy_path_renderer()
    call = traced.renderer_call(renderer, frame_calls=0, graph=True)
    with torch.inference_mode():
        for batch in (3, 5, 1):
            args, kwargs = inputs(renderer, batch)
            eager = renderer(*args, **kwargs)
            assert torch.allclose(call(*args, **kwargs), eager, atol=1e-5, rtol=1e-4), batch
            guided = renderer.guided(*args, guidance=3.0, **kwargs)
            assert torch.allclose(renderer.guided(*args, guidance=3.0, call=call, **kwargs), guided, atol=1e-4)
    held = traced._TRACED[renderer].graphs
    # batches 3, 5 and 6 (guided 3) share one graph; batch 1 (reference batch = sample batch) and 2 (guided 1)
    # are other kinds of input
    assert all(graph is not None for graph in held.values()) and len(held) == 2
    assert traced.is_traced(renderer)


def test_the_graph_is_made_only_when_asked_or_earned():
    renderer = copy_path_renderer()
    assert traced.renderer_call(renderer, traced.TRACE_MIN_FRAME_CALLS - 1) is renderer  # a small render: eager
    assert traced.renderer_call(renderer, 10**9, graph=False) is renderer  # never when told not to
    assert not traced.is_traced(renderer)
    call = traced.renderer_call(renderer, traced.TRACE_MIN_FRAME_CALLS)
    assert call is not renderer
    args, kwargs = inputs(renderer, 2)
    with torch.inference_mode():
        call(*args, **kwargs)
    assert traced.is_traced(renderer)
    assert traced.renderer_call(renderer, 1) is not renderer  # traced once: later renders use it too


def test_changed_weights_are_traced_again_and_other_devices_or_dtypes_run_eager():
    renderer = copy_path_renderer()
    call = traced.renderer_call(renderer, 0, graph=True)
    args, kwargs = inputs(renderer, 2)
    with torch.inference_mode():
        before = call(*args, **kwargs)
        with torch.no_grad():
            renderer.conv_out.bias.add_(0.5)  # a fine-tune in place: the old graph holds the old weights
        assert not traced.is_traced(renderer)
        call = traced.renderer_call(renderer, 0, graph=True)  # the next render checks the weights again
        after = call(*args, **kwargs)
        assert torch.allclose(after, renderer(*args, **kwargs), atol=1e-5) and not torch.allclose(after, before)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # another precision: the eager module, exactly
            assert torch.equal(call(*args, **kwargs), renderer(*args, **kwargs))
    renderer.train()
    with torch.no_grad():
        assert torch.equal(call(*args, **kwargs), renderer(*args, **kwargs))  # training mode: the module itself


@pytest.mark.parametrize("chunk", [8, 16])
def test_a_render_through_the_graph_does_not_depend_on_the_chunking(chunk):
    models = tiny_models()
    video = astronaut_video()
    source = ArrayFrames(video, FPS)
    track = stages.track(source, models.renderer.config.crop_size, gap_policy="passthrough")
    analysis = FaceAnalysis.of(track, models.mouth)
    motion = stages.predict_motion(models, stages.audio_features(speechlike(12 / FPS), FPS, 12, models.feature_spec),
                                   None)

    def render(chunk_size: int, graph: bool) -> np.ndarray:
        settings = RenderSettings(steps=2, chunk_size=chunk_size)
        return stages.concat(stages.render(models, analysis, motion, source, settings=settings, graph=graph))[0]

    eager = render(chunk, False)
    through_graph = render(chunk, True)
    assert traced.is_traced(models.renderer)
    assert np.array_equal(through_graph, render(24 - chunk, True))  # another chunking, the same frames
    assert np.abs(through_graph.astype(np.float64) - eager).max() <= 1e-3  # the same maths, float rounding apart


def test_a_renderer_loaded_under_inference_mode_is_traced_too():
    """ComfyUI loads weights under inference mode: inference tensors keep no version counter."""
    with torch.inference_mode():
        renderer = copy_path_renderer()
        args, kwargs = inputs(renderer, 2)
        out = traced.renderer_call(renderer, 0, graph=True)(*args, **kwargs)
        assert traced.is_traced(renderer)
        assert torch.allclose(out, renderer(*args, **kwargs), atol=1e-5)
