"""The staged core API: the steps of a lip-sync job, each taking and returning the contracts of ``types``.

``track`` -> ``audio_features`` -> ``style_reference`` -> ``predict_motion`` -> ``render``. The command line
(through :mod:`pipeline`), the ComfyUI nodes and ``train eval`` all call these, so each step exists once;
``render`` is the only loop over chunks of frames in the project. Memory is bounded by the chunk: only
landmarks and per-frame parameters are held for the whole video.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .audio import compute_features
from .audio.features import CONTEXT, N_MELS
from .face import FaceTracker, warp_to_crops
from .media import FrameSource
from .models.bundle import LipSyncModels
from .render.cache import RenderCache
from .render.codec import LatentCodec, codec_identity
from .render.conditioning import choose_reference_frames
from .render.frames import CropGenerator, FrameRenderer, Stopwatch
from .render.settings import RenderSettings
from .style import adjust_motion, assemble_reference
from .types import (
    DEFAULT_REFERENCE_FRAMES,
    AudioFeatures,
    FaceAnalysis,
    FaceTrack,
    FeatureSpec,
    LipMotion,
    LipSyncInputError,
    StyleReference,
)

# Windows per stage-1 call: bounds activation memory on long videos; the result does not depend on it.
MOTION_BATCH = 512
TRACK_CHUNK = 32  # frames decoded and tracked per step of the stream

Progress = Callable[[int, int], None]  # (done, total) of the current stage
Hook = Callable[[], None]  # called before each chunk; raises to stop (a cancelled job)


def _nothing(*_args) -> None:
    return None


def track(source: FrameSource, crop_size: int, progress: Progress = _nothing, before_chunk: Hook = _nothing,
          what: str = "video", **tracker_options) -> FaceTrack:
    """The face followed through every frame of a source, streamed in chunks (frame count in == out)."""
    name = source.describe(what)
    with FaceTracker(source.fps, crop_size=crop_size, input_name=name, **tracker_options) as tracker:
        done = 0
        for chunk in source.iter_chunks(TRACK_CHUNK):
            before_chunk()
            tracker.feed(chunk)
            done += len(chunk)
            progress(done, source.num_frames)
        if done == 0:
            raise LipSyncInputError(f"{name}: it has no frames; give a video of at least 2 frames.")
        found = tracker.finish()
    source.num_frames = len(found)  # exact, now that every frame was decoded
    return found


def audio_features(wave: np.ndarray, fps: float, num_frames: int, spec: FeatureSpec) -> AudioFeatures:
    """Features of ``spec``'s kind for ``num_frames`` video frames of 16 kHz mono ``wave`` (weight-free log-mel;
    learned encoders' features come from ComfyUI's audio encoder nodes)."""
    if spec.kind != "logmel":
        raise LipSyncInputError(
            f"audio features: the motion model was trained on '{spec.kind}' features; compute them with the "
            "matching encoder (the StyleLipSync audio-features node) and pass them in."
        )
    extra = spec.extra
    feats = compute_features(
        wave, fps, num_frames, n_mels=extra.get("n_mels", N_MELS), context=extra.get("context", CONTEXT)
    )
    feats.spec.check_compatible(spec)
    return feats


def style_reference(analysis: FaceAnalysis, wave: np.ndarray, spec: FeatureSpec,
                    max_frames: int = DEFAULT_REFERENCE_FRAMES, source: str = "clip") -> StyleReference:
    """A clip's speaking style from its analysis and its own audio (what its lips were saying, 16 kHz mono)."""
    if not analysis.track.usable.any():
        raise LipSyncInputError(f"style: no face found in the {source}; give a clip where the face is visible.")
    features = audio_features(wave, analysis.track.fps, len(analysis.track), spec)
    return assemble_reference(analysis, features, max_frames, source)


def predict_motion(
    models: LipSyncModels,
    features: AudioFeatures,
    style: StyleReference | None,
    style_strength: float = 1.0,
    mouth_scale: float = 1.0,
    close_on_silence: bool = False,
    return_attention: bool = True,
) -> LipMotion:
    """Stage 1 over every frame in one batched call, then the artist's adjustments (``style``)."""
    features.spec.check_compatible(models.feature_spec)
    ref_audio = ref_mouth = None
    if style is not None:
        style.spec.check_compatible(models.feature_spec, "style reference audio")
        ref_audio, ref_mouth = style.audio_features, style.mouth_params
    params, attention = models.motion.predict_clip(
        features.features, ref_audio, ref_mouth, style_strength=style_strength, return_attention=return_attention,
        batch_size=MOTION_BATCH,
    )
    params = adjust_motion(params.float().cpu().numpy(), models.mouth, features.silence, mouth_scale,
                           close_on_silence)
    return LipMotion(
        params=params,
        fps=features.fps,
        attention=None if attention is None else attention.float().cpu().numpy(),
        style_strength=float(style_strength),
    )


def appearance_references(source: FrameSource, analysis: FaceAnalysis, count: int,
                          crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops of ``count`` frames spread over mouth openness, and their openings: the renderer's appearance
    reference."""
    idx = choose_reference_frames(analysis.openness, analysis.track.usable, count)
    return warp_to_crops(source.get(idx), analysis.track.crop_transforms[idx], crop_size), analysis.openness[idx]


@dataclass(frozen=True)
class RenderedChunk:
    """Consecutive output frames: their indices, the frames [n, H, W, 3] and where they were repainted [n, H, W]."""

    indices: np.ndarray
    frames: np.ndarray
    masks: np.ndarray


def render(
    models: LipSyncModels,
    analysis: FaceAnalysis,
    motion: LipMotion,
    source: FrameSource,
    frame_indices: np.ndarray | None = None,
    settings: RenderSettings | None = None,
    codec: LatentCodec | None = None,
    progress: Progress = _nothing,
    before_chunk: Hook = _nothing,
    step_callback: Callable[[int], None] | None = None,
    stopwatch: Stopwatch | None = None,
    generate: CropGenerator | None = None,
    cache: RenderCache | None = None,
    graph: bool | None = None,
) -> Iterator[RenderedChunk]:
    """Stage 2 over the output frames, one chunk at a time (the project's only chunk loop).

    ``frame_indices``: the source frame of each output frame (after a length policy; default one each).
    Chunks hold whole render blocks (:meth:`RenderSettings.io_chunk`), so the chunk size changes memory,
    never a frame. ``generate`` replaces the networks (the fidelity benchmark's rows). ``cache``: the
    seed-independent work of an earlier render of this job, reused (bit-identical; :mod:`render.cache`) and
    kept for the next one; emptied first when the job differs. ``graph``: the renderer's CPU graph
    (render.traced): True makes it at once (a caller that renders again with these models; default when it keeps
    a ``cache``), False never uses it, None when the render earns it back.
    """
    settings = settings or RenderSettings()
    clock = stopwatch or Stopwatch()
    frame_indices = np.arange(len(analysis)) if frame_indices is None else np.asarray(frame_indices)
    crop_size = models.renderer.config.crop_size
    codec = models.codec(codec)
    if cache is not None:  # everything the seed-independent work depends on
        cache.bind(renderer=models.renderer, mouth=models.mouth, codec=codec_identity(codec),
                   device=str(next(models.renderer.parameters()).device), analysis=analysis, motion=motion,
                   source=source, frame_indices=frame_indices, precision=settings.precision,
                   reference_images=settings.reference_images, render_batch=settings.render_batch)
    with clock("reference encode"):
        refs, openness = appearance_references(source, analysis, settings.reference_images, crop_size)
        renderer = FrameRenderer(models, codec, analysis, motion, frame_indices, refs, settings,
                                 stopwatch=clock, reference_openness=openness, cache=cache,
                                 graph=True if graph is None and cache is not None else graph)
    total, chunk = len(frame_indices), settings.io_chunk()
    for start in range(0, total, chunk):
        before_chunk()
        out_idx = np.arange(start, min(start + chunk, total))
        with clock("decode frames"):
            frames = source.get(frame_indices[out_idx])
        out, masks = renderer.render(frames, out_idx, step_callback, generate)
        yield RenderedChunk(out_idx, out, masks)
        progress(int(out_idx[-1]) + 1, total)


def concat(chunks: Iterable[RenderedChunk]) -> tuple[np.ndarray, np.ndarray]:
    """All of a render's chunks as one array of frames [T, H, W, 3] and one of masks [T, H, W]."""
    done = list(chunks)
    return np.concatenate([c.frames for c in done]), np.concatenate([c.masks for c in done])
