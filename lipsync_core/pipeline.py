"""The whole job, from a video and an audio track to the lip-synced video: the stages composed.

:func:`prepare` runs everything before stage 2 (:mod:`stages`: track, audio features, style reference,
stage 1); :func:`lipsync` then streams stage 2's chunks into a sink; :func:`lipsync_file` is the command
line's job, from files to a file. The ComfyUI all-in-one node calls :func:`prepare` (and keeps its result
across runs whose inputs did not change) and :func:`stages.render`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import stages
from .audio import TARGET_RATE, load_audio_file
from .audio.io import STYLE_AUDIO_FIX
from .audio.length import LengthMatch, match_length
from .media import FrameSource, VideoFileFrames, VideoWriter, check_output_path
from .models.bundle import LipSyncModels
from .render.codec import LatentCodec
from .render.frames import Stopwatch
from .render.settings import RenderSettings
from .types import DEFAULT_REFERENCE_FRAMES, LENGTH_POLICIES, FaceAnalysis, FaceTrack, LipMotion, LipSyncInputError

Report = Callable[[str, int, int], None]  # (stage, done, total)


def _no_report(_stage: str, _done: int, _total: int) -> None:
    return None


@dataclass(frozen=True)
class JobOptions:
    """The choices of a whole job besides its inputs (the CLI's flags, the all-in-one node's widgets)."""

    settings: RenderSettings = field(default_factory=RenderSettings)
    length_policy: str = LENGTH_POLICIES[0]
    style_strength: float = 1.0
    max_reference_frames: int = DEFAULT_REFERENCE_FRAMES
    tracker_options: dict = field(default_factory=dict)  # FaceTracker options (gap policy, longest gap)


@dataclass(frozen=True)
class Prepared:
    """Everything before stage 2: what a re-render with another seed, sampler or step count reuses."""

    analysis: FaceAnalysis
    matched: LengthMatch
    motion: LipMotion
    notes: tuple[str, ...] = ()


def prepare(
    video: FrameSource,
    wave: np.ndarray,
    models: LipSyncModels,
    style_video: FrameSource | None = None,
    style_wave: np.ndarray | None = None,
    options: JobOptions | None = None,
    progress: Report | None = None,
    before_chunk: stages.Hook = stages._nothing,
    track: FaceTrack | None = None,
    matched: LengthMatch | None = None,
    clock: Stopwatch | None = None,
) -> Prepared:
    """Track, match lengths, audio features, style reference and stage 1.

    The style reference is the input video itself (its frames and its own audio, as the paper does at test
    time) unless ``style_video`` + ``style_wave`` are given; with neither, the model's generic style.
    ``track`` and ``matched`` may be passed in by a caller that needed them first.
    """
    options = options or JobOptions()
    report = progress or _no_report
    clock = clock or Stopwatch()
    crop_size = models.renderer.config.crop_size
    spec = models.feature_spec
    if track is None:
        with clock("track"):
            track = stages.track(video, crop_size, lambda d, t: report("track", d, t), before_chunk, "video",
                                 **options.tracker_options)
    if len(track) < 2:
        raise LipSyncInputError(
            f"{video.describe('video')}: it has {len(track)} frame; lip sync needs a video of at least 2 frames "
            "(to animate a still image, repeat it into a clip first)."
        )
    with clock("analyse + audio features"):
        analysis = FaceAnalysis.of(track, models.mouth)
        if matched is None:
            matched = match_length(video.num_frames, wave, video.fps, options.length_policy)
        features = stages.audio_features(matched.wave, video.fps, matched.num_frames, spec)

    with clock("style reference"):
        style = None
        if style_video is not None:
            if style_wave is None:
                raise LipSyncInputError("style: a style video needs its own audio; give the style clip's audio too.")
            style_track = stages.track(style_video, crop_size, lambda d, t: report("track style", d, t),
                                       before_chunk, "style", **options.tracker_options)
            style = stages.style_reference(FaceAnalysis.of(style_track, models.mouth), style_wave, spec,
                                           options.max_reference_frames, "style video")
        elif style_wave is not None:
            style = stages.style_reference(analysis, style_wave, spec, options.max_reference_frames, "input video")

    with clock("stage 1 (motion)"):
        motion = stages.predict_motion(models, features, style, options.style_strength)
    notes = tuple(track.notes) + ((matched.note,) if matched.note else ())
    return Prepared(analysis, matched, motion, notes)


@dataclass
class LipSyncResult:
    num_frames: int
    fps: float
    wave: np.ndarray  # 16 kHz mono audio matching the output length
    motion: LipMotion
    track: FaceTrack
    notes: list[str]
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    frame_indices: np.ndarray | None = None  # (num_frames,) source frame of each output frame


def lipsync(
    video: FrameSource,
    wave: np.ndarray,
    models: LipSyncModels,
    sink: Callable[[np.ndarray, np.ndarray], None],
    style_video: FrameSource | None = None,
    style_wave: np.ndarray | None = None,
    options: JobOptions | None = None,
    codec: LatentCodec | None = None,
    progress: Report | None = None,
    track: FaceTrack | None = None,
    matched: LengthMatch | None = None,
) -> LipSyncResult:
    """Run the whole job; ``sink(frames, masks)`` receives output chunks in order (see :func:`prepare`)."""
    options = options or JobOptions()
    report = progress or _no_report
    codec = models.codec(codec)  # a VAE that does not fit the renderer is refused before any tracking
    clock = Stopwatch()
    job = prepare(video, wave, models, style_video, style_wave, options, report, track=track, matched=matched,
                  clock=clock)
    indices = job.matched.frame_indices
    for chunk in stages.render(models, job.analysis, job.motion, video, indices, options.settings, codec,
                               progress=lambda d, t: report("render", d, t), stopwatch=clock):
        with clock("write"):
            sink(chunk.frames, chunk.masks)
    return LipSyncResult(len(indices), video.fps, job.matched.wave, job.motion, job.analysis.track, list(job.notes),
                         clock.seconds, indices)


@dataclass
class FileInputs:
    """The input files of a job, opened and checked (audio decoded) before any model is loaded."""

    video: VideoFileFrames
    wave: np.ndarray  # the new audio, 16 kHz mono
    style_video: VideoFileFrames | None = None
    style_wave: np.ndarray | None = None  # the style clip's audio, or the input video's own (None if silent)
    paths: dict[str, Path] = field(default_factory=dict)  # input name -> path: never written to
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(
        cls, video_path: str | os.PathLike, audio_path: str | os.PathLike, style_path: str | os.PathLike | None = None
    ) -> FileInputs:
        video = VideoFileFrames(video_path, "video")
        wave = load_audio_file(audio_path, what="audio")
        paths = {"video": Path(video_path), "audio": Path(audio_path)}
        if style_path is not None:
            paths["style"] = Path(style_path)
            return cls(video, wave, VideoFileFrames(style_path, "style"),
                       load_audio_file(style_path, what="style", fix=STYLE_AUDIO_FIX), paths)  # fmt: skip
        try:
            own = load_audio_file(video_path, what="video")  # the input video's own audio is the default reference
        except LipSyncInputError:  # a silent video: no audio-aware reference, the model's generic style
            return cls(video, wave, None, None, paths, ["the video has no usable sound of its own, so no style "
                                                        "reference was taken from it (give a style clip)"])
        return cls(video, wave, None, own, paths)


def lipsync_file(
    video_path: str | os.PathLike,
    audio_path: str | os.PathLike,
    out_path: str | os.PathLike,
    models: LipSyncModels,
    style_path: str | os.PathLike | None = None,
    inputs: FileInputs | None = None,
    options: JobOptions | None = None,
    progress: Report | None = None,
) -> LipSyncResult:
    """The CLI's job: stream a video file through :func:`lipsync` into an mp4 with the new audio.

    ``out_path`` may not be any input (refused before any work); the output appears only when
    it is complete. ``inputs`` (:meth:`FileInputs.open` of the same paths) may be passed by a
    caller that opened them before loading the models, as the command line does.
    """
    paths = {"video": video_path, "audio": audio_path, "style": style_path}
    check_output_path(out_path, paths)
    if inputs is None:
        inputs = FileInputs.open(video_path, audio_path, style_path)
    video, options = inputs.video, options or JobOptions()
    report = progress or _no_report
    start = time.perf_counter()
    track_first = stages.track(video, models.renderer.config.crop_size, lambda d, t: report("track", d, t),
                               what="video", **options.tracker_options)
    track_seconds = time.perf_counter() - start
    matched = match_length(video.num_frames, inputs.wave, video.fps, options.length_policy)
    with VideoWriter(out_path, video.fps, audio=matched.wave, sample_rate=TARGET_RATE) as writer:
        result = lipsync(video, inputs.wave, models, lambda frames, masks: writer.write(frames),
                         style_video=inputs.style_video, style_wave=inputs.style_wave, options=options,
                         progress=progress, track=track_first, matched=matched)  # fmt: skip
    result.seconds = {"track": track_seconds, **result.seconds}
    result.notes.extend(inputs.notes + writer.notes)
    return result
