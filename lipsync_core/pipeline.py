"""The whole job, from a video and an audio track to the lip-synced video.

track the face -> audio features -> style reference -> stage 1 over all frames in one
batched call -> stage 2 in chunks of frames -> paste back. The CLI streams frames from
and to files; the ComfyUI nodes call the same steps on in-memory frames. Memory is
bounded by the chunk: only landmarks and per-frame parameters are kept for the
whole video.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .audio import TARGET_RATE, compute_features, load_audio_file
from .audio.features import CONTEXT, N_MELS
from .audio.io import STYLE_AUDIO_FIX
from .audio.length import LengthMatch, match_length
from .face import FaceTracker, paste_back, track_faces, warp_to_crops
from .face.align import MASK_FEATHER, MASK_POINTS
from .face.template import crop_framing
from .media import VideoWriter, check_output_path, iter_video_frames, probe_video
from .models.io import load_model
from .models.precision import autocast_context
from .motion import MOUTH_INDICES, MouthModel, mouth_opening, procrustes_align, rotation_to_vector
from .render.codec import DiffusersVAECodec, LatentCodec, check_codec
from .render.conditioning import (
    choose_reference_frames,
    choose_reference_window,
    mask_lower_half,
    motion_windows,
    nearest_by_opening,
    with_clean_upper,
)
from .render.sampling import make_scheduler, sample_lower_half, shared_noise
from .render.settings import RenderSettings
from .types import AudioFeatures, FaceTrack, FeatureSpec, LipMotion, LipSyncInputError, StyleReference
from .weights import MODEL_FILES, check_model_folder  # noqa: F401 - MODEL_FILES: the folder's names, re-exported

# Where the paste mask's points sit among the mouth model's vertices (lips, then jaw).
_MASK_IN_MOUTH = np.array([list(MOUTH_INDICES).index(i) for i in MASK_POINTS])
# Windows per stage-1 call: bounds activation memory on long videos; the result does not depend on it.
MOTION_BATCH = 512

Progress = Callable[[int, int], None]  # (done, total) of the current stage
Interrupt = Callable[[], None]  # raises to stop between chunks
CropGenerator = Callable[[torch.Tensor, np.ndarray], np.ndarray]  # (crops [n,S,S,3], output indices) -> crops


def _nothing(*_args) -> None:
    return None


class Stopwatch:
    """Seconds spent per named stage (summed over chunks): the throughput split the CLI reports."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


# ----------------------------------------------------------------------------- models


@dataclass
class LipSyncModels:
    """The stage-1 and stage-2 models, the mouth model, and the renderer's own VAE (if shipped)."""

    motion: torch.nn.Module
    renderer: torch.nn.Module
    mouth: MouthModel
    vae: torch.nn.Module | None = None

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> LipSyncModels:
        """Load ``motion``, ``renderer``, ``mouth_model`` (and ``vae`` if present) .safetensors from a folder."""
        paths = check_model_folder(folder)
        renderer = load_model(paths["renderer"], "renderer", device)
        check_framing(renderer.config.crop_framing, f"renderer {paths['renderer']}")  # before any tracking
        return cls(
            motion=load_model(paths["motion"], "motion", device),
            renderer=renderer,
            mouth=MouthModel.load(paths["mouth_model"]),
            vae=load_model(paths["vae"], "vae", device) if "vae" in paths else None,
        )

    @property
    def feature_spec(self) -> FeatureSpec:
        spec = self.motion.config.feature_spec
        if not spec:
            raise LipSyncInputError("motion model: its file records no audio feature spec; re-export it.")
        return FeatureSpec.from_dict(spec)

    def codec(self, external: LatentCodec | None = None) -> LatentCodec:
        """The latent codec to render with: the caller's VAE if given, else the renderer's own."""
        cfg = self.renderer.config
        if external is None:
            if self.vae is None:
                raise LipSyncInputError("vae: the renderer ships no VAE; connect the VAE it was trained with.")
            external = DiffusersVAECodec(self.vae, cfg.latent_scale, cfg.latent_shift)
        check_codec(external, cfg.latent_channels)
        return external


# ----------------------------------------------------------------------------- frames


class FrameSource:
    """Random access by index to a video's frames, in chunks; arrays and files alike."""

    fps: float
    num_frames: int

    def iter_chunks(self, size: int) -> Iterator[np.ndarray]:
        for start in range(0, self.num_frames, size):
            yield self.get(np.arange(start, min(start + size, self.num_frames)))

    def get(self, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self, what: str) -> str:
        """How errors name this source: the input's name (and its file, if it has one)."""
        return what


class ArrayFrames(FrameSource):
    """Frames already in memory (ComfyUI IMAGE batches): [T, H, W, 3] float 0..1 or uint8.

    ``name``: how errors name them (a node's input, e.g. "images"); default the pipeline's own word.
    """

    def __init__(self, frames, fps: float, name: str | None = None) -> None:
        if isinstance(frames, torch.Tensor):
            frames = frames.detach().cpu().numpy()
        self.frames = frames
        self.fps = float(fps)
        self.num_frames = len(frames)
        self.name = name

    def describe(self, what: str) -> str:
        return self.name or what

    def get(self, indices: np.ndarray) -> np.ndarray:
        return self.frames[np.asarray(indices)]


class VideoFileFrames(FrameSource):
    """Frames decoded from a file on demand: forward reads stream, a backward jump re-reads.

    Only the frames of the requested range are held, so memory is bounded by the chunk.
    """

    REREAD_WINDOW = 64  # frames; a requested range up to this long is kept for a re-read

    def __init__(self, path: str | os.PathLike, what: str = "video") -> None:
        self.path = Path(path)
        self.what = what
        info = probe_video(self.path, what)
        self.fps = info.fps
        # The container's count can be an estimate: tracking, which decodes every frame, sets the exact one.
        self.num_frames = info.frame_count
        self._reader: Iterator[np.ndarray] | None = None
        self._pos = 0  # index of the next frame the reader yields
        self._pending: list[np.ndarray] = []

    def iter_chunks(self, size: int) -> Iterator[np.ndarray]:
        yield from iter_video_frames(self.path, size, self.what)

    def describe(self, what: str) -> str:
        return f"{what} {self.path}"

    def _restart(self) -> None:
        self._reader = iter_video_frames(self.path, 16, self.what)
        self._pos, self._pending = 0, []

    def _next_frame(self) -> np.ndarray:
        if not self._pending:
            self._pending = list(next(self._reader))
        self._pos += 1
        return self._pending.pop(0)

    def get(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        lo, hi = int(indices.min()), int(indices.max())
        if self._reader is None or lo < self._pos:
            self._restart()
        while self._pos < lo:
            self._next_frame()
        wanted = {int(i) for i in indices}
        keep_range = hi - lo < self.REREAD_WINDOW  # a chunk: keep it so a loop or ping-pong can revisit it
        held = {}
        while self._pos <= hi:
            i = self._pos
            frame = self._next_frame()
            if keep_range or i in wanted:  # frames spread over the video (references): only those
                held[i] = frame
        if keep_range:
            self._pending = [held[i] for i in range(lo, hi + 1)] + self._pending
            self._pos = lo
        return np.stack([held[int(i)] for i in indices])


# ----------------------------------------------------------------------------- analysis


@dataclass
class FaceAnalysis:
    """What the mouth model reads from a tracked face: per-frame params, pose, the person's identity."""

    track: FaceTrack
    params: np.ndarray  # (T, 13); frames that are not usable hold their nearest usable frame's values
    rotations: np.ndarray  # (T, 3) axis-angle
    identity: np.ndarray  # (id_dim,)
    openness: np.ndarray  # (T,) inner-lip gap, IOD units
    neutral: np.ndarray  # (478, 3) aligned neutral mesh

    @classmethod
    def of(cls, track: FaceTrack, mouth: MouthModel) -> FaceAnalysis:
        usable_landmarks = track.landmarks[track.usable]
        neutral = mouth.neutral_shape(usable_landmarks)
        aligned = mouth.align(track.landmarks)
        return cls(
            track=track,
            params=mouth.encode(track.landmarks, neutral=neutral),
            rotations=rotation_to_vector(track.rotations),
            identity=mouth.identity(neutral=neutral),
            openness=mouth_opening(aligned),
            neutral=neutral,
        )


def track_source(source: FrameSource, crop_size: int, progress: Progress = _nothing, interrupt: Interrupt = _nothing,
                 what: str = "video", **tracker_options) -> FaceTrack:
    """Track the face through every frame of a source, streaming in chunks."""
    name = source.describe(what)
    with FaceTracker(source.fps, crop_size=crop_size, input_name=name, **tracker_options) as tracker:
        done = 0
        for chunk in source.iter_chunks(32):
            interrupt()
            tracker.feed(chunk)
            done += len(chunk)
            progress(done, source.num_frames)
        if done == 0:
            raise LipSyncInputError(f"{name}: it has no frames; give a video of at least 2 frames.")
        track = tracker.finish()
    source.num_frames = len(track)  # exact, now that every frame was decoded
    return track


def audio_features(wave: np.ndarray, fps: float, num_frames: int, spec: FeatureSpec) -> AudioFeatures:
    """Features of ``spec``'s kind for ``num_frames`` video frames (only weight-free log-mel here)."""
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


def make_style_reference(
    analysis: FaceAnalysis,
    features: AudioFeatures,
    max_frames: int = 256,
    source: str = "",
) -> StyleReference:
    """The paper's style reference from a clip: n consecutive frames' audio (keys) and mouth params (values)."""
    speech = ~features.silence if features.silence is not None else np.ones(len(features), bool)
    n = min(len(features), len(analysis.params))
    idx = choose_reference_window(analysis.track.usable[:n], speech[:n], max_frames)
    return StyleReference(
        audio_features=features.features[idx],
        mouth_params=analysis.params[idx],
        face_crops=np.zeros((0, analysis.track.crop_size, analysis.track.crop_size, 3), np.float32),
        spec=features.spec,
        source=source,
        frame_indices=idx,
        identity=analysis.identity,
    )


def closed_mouth_params(mouth: MouthModel) -> np.ndarray:
    """Mouth params of the person's neutral (closed) mouth: expression 0 -> p = -mean @ C^T."""
    return (-mouth.expr_mean @ mouth.components.T).astype(np.float32)


def predict_motion(
    models: LipSyncModels,
    features: AudioFeatures,
    style: StyleReference | None,
    style_strength: float = 1.0,
    mouth_scale: float = 1.0,
    close_on_silence: bool = False,
    return_attention: bool = True,
) -> LipMotion:
    """Stage 1 over every frame in one batched call, then the artist's adjustments."""
    features.spec.check_compatible(models.feature_spec)
    ref_audio = ref_mouth = None
    if style is not None:
        style.spec.check_compatible(models.feature_spec, "style reference audio")
        ref_audio, ref_mouth = style.audio_features, style.mouth_params
    params, attention = models.motion.predict_clip(
        features.features, ref_audio, ref_mouth, style_strength=style_strength, return_attention=return_attention,
        batch_size=MOTION_BATCH,
    )
    params = params.float().cpu().numpy()
    closed = closed_mouth_params(models.mouth)
    if mouth_scale != 1.0:
        params = closed + float(mouth_scale) * (params - closed)
    if close_on_silence and features.silence is not None:
        weight = np.convolve(features.silence.astype(np.float32), np.ones(3) / 3, mode="same")[:, None]
        params = params + weight * (closed - params)
    return LipMotion(
        params=params.astype(np.float32),
        fps=features.fps,
        attention=None if attention is None else attention.float().cpu().numpy(),
        style_strength=float(style_strength),
    )


# ----------------------------------------------------------------------------- rendering


@dataclass
class FrameRenderer:
    """Stage 2 for chunks of frames: crop, mask, encode, sample the lower half, decode, paste back.

    Everything shared by all chunks (reference features, the one initial noise, the motion
    windows) is computed once here, so the chunk size never changes the result.
    """

    models: LipSyncModels
    codec: LatentCodec
    analysis: FaceAnalysis
    motion: LipMotion
    source_indices: np.ndarray  # (T_out,) source frame of each output frame
    reference_crops: np.ndarray  # (k, S, S, 3) float 0..1
    settings: RenderSettings = field(default_factory=RenderSettings)
    stopwatch: Stopwatch = field(default_factory=Stopwatch)
    reference_openness: np.ndarray | None = None  # (k,) mouth opening of each reference; None: measured here

    def __post_init__(self) -> None:
        renderer = self.models.renderer
        cfg = renderer.config
        check_framing(cfg.crop_framing)
        self.device = next(renderer.parameters()).device
        src = self.source_indices
        self.windows = torch.from_numpy(
            motion_windows(self.motion.params, self.analysis.identity, self.analysis.rotations[src], cfg.motion_window)
        )
        with torch.inference_mode(), autocast_context(self.device, self.settings.precision):
            ref = torch.from_numpy(np.ascontiguousarray(self.reference_crops, dtype=np.float32))
            ref_latents = self.codec.encode(ref).to(self.device)
            self.reference_features = renderer.encode_reference(ref_latents[None])
        c, h, w = ref_latents.shape[1:]
        self.noise = shared_noise((c, h, w), self.settings.seed, self.device)
        self.reference_latents = ref_latents
        if cfg.reference_concat:  # the copy path: per output frame, the reference nearest its driving opening
            if self.reference_openness is None:
                self.reference_openness = crop_openness(self.reference_crops, self.models.mouth)
            driving = self.models.mouth.opening(self.motion.params, self.analysis.neutral)
            self.aligned_reference = nearest_by_opening(self.reference_openness, driving)

    def render(self, frames: np.ndarray, out_indices: np.ndarray, step_callback=None,
               generate: CropGenerator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """frames [n, H, W, 3] (the source frames of output frames ``out_indices``) -> (frames, masks [n, H, W]).

        Frames go through the networks in blocks aligned to absolute output indices
        (``settings.render_batch`` frames each): a frame is always computed in the same batch,
        so the result is bit-identical for any chunking whose chunks hold whole blocks
        (:meth:`RenderSettings.io_chunk`). ``generate(crops, out_indices) -> crops`` replaces the
        networks (the fidelity benchmark's resample-only, VAE-only and seam rows); cropping and
        paste-back stay exactly as in a real run.
        """
        track = self.analysis.track
        src = self.source_indices[out_indices]
        transforms = track.crop_transforms[src]
        usable = track.usable[src]
        size = self.models.renderer.config.crop_size
        out_crops = np.zeros((len(frames), size, size, 3), np.float32)
        blocks = np.asarray(out_indices) // self.settings.render_batch
        for block in np.unique(blocks):
            todo = np.flatnonzero(usable & (blocks == block))
            if not len(todo):
                continue
            with self.stopwatch("crop"):
                crops = torch.from_numpy(warp_to_crops(frames[todo], transforms[todo], size))
            if generate is None:
                out_crops[todo] = self._render_crops(crops, out_indices[todo], step_callback)
            else:
                out_crops[todo] = generate(crops, out_indices[todo])
        with self.stopwatch("paste back"):
            out, masks = paste_back(
                frames, out_crops, transforms, landmarks=track.landmarks[src], usable=usable,
                feather=MASK_FEATHER if self.settings.feather is None else self.settings.feather,
                color_match_strength=self.settings.color_match,
                mask_points=self.generated_mouth_points(src, out_indices),
            )
        return out, masks

    def generated_mouth_points(self, src: np.ndarray, out_indices: np.ndarray) -> np.ndarray:
        """Image points (n, N, 2) of the lips and jaw the renderer is asked to draw: the paste mask covers
        them as well as the frame's own, so a jaw opened wider than in the frame is repainted whole."""
        mouth = self.models.mouth
        pose = procrustes_align(self.analysis.track.landmarks[src], mouth.mean_face)
        verts = mouth.decode(self.motion.params[out_indices], self.analysis.neutral)[:, _MASK_IN_MOUTH]
        image = pose.scale[:, None, None] * np.einsum("tnj,tkj->tnk", verts, pose.rotation)
        return (image + pose.translation[:, None, :])[..., :2]

    def _render_crops(self, crops: torch.Tensor, out_indices: np.ndarray, step_callback) -> np.ndarray:
        """One batch of face crops [n, S, S, 3] of usable frames -> generated crops [n, S, S, 3] float 0..1."""
        clock, renderer = self.stopwatch, self.models.renderer
        with torch.inference_mode(), autocast_context(self.device, self.settings.precision):
            with clock("vae encode"):
                context = self.codec.encode(mask_lower_half(crops)).to(self.device)
                clean = self.codec.encode(crops).to(self.device)
            motion = self.windows[out_indices].to(self.device, context.dtype)
            refs = self.reference_features
            aligned = None
            if renderer.config.reference_concat:
                aligned = self.reference_latents[torch.from_numpy(self.aligned_reference[out_indices])]

            def denoiser(sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return renderer(sample, t, motion, masked_latent=context, reference_features=refs,
                                reference_latent=aligned)

            with clock("denoise"):
                latents = sample_lower_half(
                    denoiser, context, self.noise, make_scheduler(self.settings.sampler), self.settings.steps,
                    step_callback,
                )
            with clock("vae decode"):
                return self.codec.decode(with_clean_upper(latents, clean)).float().cpu().numpy()


def check_framing(framing, name: str = "renderer") -> None:
    """A renderer renders the crop framing it was trained on; crops of another framing would misplace the face."""
    if framing is None:  # built in code, not loaded: it takes this version's framing
        return
    trained = tuple(framing)
    if not np.allclose(trained, crop_framing()):
        raise LipSyncInputError(
            f"{name}: it was trained on face crops framed {trained} (scale, centre) but this version crops "
            f"{crop_framing()}; use a renderer trained with this version (the shipped demo models are)."
        )


def reference_crops_from(source: FrameSource, analysis: FaceAnalysis, count: int,
                         crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops of ``count`` frames spread over mouth openness, and their openings: the renderer's appearance
    reference."""
    idx = choose_reference_frames(analysis.openness, analysis.track.usable, count)
    return warp_to_crops(source.get(idx), analysis.track.crop_transforms[idx], crop_size), analysis.openness[idx]


def crop_openness(crops: np.ndarray, mouth: MouthModel) -> np.ndarray:
    """Mouth opening (k,) of face crops given without their track (a style node's crops): tracked here;
    a crop where no face is found counts as the median opening of the others (0 if none)."""
    track = track_faces(np.asarray(crops), fps=25.0, crop_size=int(np.asarray(crops).shape[1]), smoothing=None)
    opening = np.full(len(track), np.nan, np.float32)
    if track.detected.any():
        opening[track.detected] = mouth_opening(mouth.align(track.landmarks[track.detected]))
    fill = float(np.nanmedian(opening)) if np.isfinite(opening).any() else 0.0
    return np.where(np.isfinite(opening), opening, fill).astype(np.float32)


# ----------------------------------------------------------------------------- the whole job


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
    settings: RenderSettings | None = None,
    length_policy: str = "trim_to_audio",
    style_strength: float = 1.0,
    max_reference_frames: int = 256,
    codec: LatentCodec | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    interrupt: Interrupt = _nothing,
    tracker_options: dict | None = None,
    track: FaceTrack | None = None,
    matched: LengthMatch | None = None,
) -> LipSyncResult:
    """Run the whole job; ``sink(frames, masks)`` receives output chunks in order.

    The style reference is the input video itself (its frames and its own audio, as the
    paper does at test time) unless ``style_video`` + ``style_wave`` are given. ``track`` and
    ``matched`` (``match_length(video.num_frames, wave, video.fps, length_policy)``) may be passed in
    by a caller that needed them first, as ``lipsync_file`` does to open its writer.
    """
    settings = settings or RenderSettings()
    report = progress or (lambda stage, done, total: None)
    tracker_options = tracker_options or {}
    crop_size = models.renderer.config.crop_size
    codec = models.codec(codec)
    spec = models.feature_spec
    clock = Stopwatch()

    if track is None:
        with clock("track"):
            track = track_source(video, crop_size, lambda d, t: report("track", d, t), interrupt, "video",
                                 **tracker_options)
    if len(track) < 2:
        raise LipSyncInputError(
            f"{video.describe('video')}: it has {len(track)} frame; lip sync needs a video of at least 2 frames "
            "(to animate a still image, repeat it into a clip first)."
        )
    with clock("analyse + audio features"):
        analysis = FaceAnalysis.of(track, models.mouth)
        if matched is None:
            matched = match_length(video.num_frames, wave, video.fps, length_policy)
        features = audio_features(matched.wave, video.fps, matched.num_frames, spec)

    with clock("style reference"):
        if style_video is None:
            style = None
            if style_wave is not None:
                own = audio_features(style_wave, video.fps, video.num_frames, spec)
                style = make_style_reference(analysis, own, max_reference_frames, "input video")
        else:
            if style_wave is None:
                raise LipSyncInputError("style: a style video needs its own audio; give the style clip's audio too.")
            style_track = track_source(style_video, crop_size, lambda d, t: report("track style", d, t), interrupt,
                                       "style", **tracker_options)
            style_analysis = FaceAnalysis.of(style_track, models.mouth)
            style_feats = audio_features(style_wave, style_video.fps, style_video.num_frames, spec)
            style = make_style_reference(style_analysis, style_feats, max_reference_frames, "style video")

    with clock("stage 1 (motion)"):
        motion = predict_motion(models, features, style, style_strength)
    with clock("reference encode"):
        ref_crops, ref_openness = reference_crops_from(video, analysis, settings.reference_images, crop_size)
        renderer = FrameRenderer(models, codec, analysis, motion, matched.frame_indices, ref_crops, settings,
                                 stopwatch=clock, reference_openness=ref_openness)
    total, chunk = matched.num_frames, settings.io_chunk()
    for start in range(0, total, chunk):
        interrupt()
        out_idx = np.arange(start, min(start + chunk, total))
        with clock("decode frames"):
            frames = video.get(matched.frame_indices[out_idx])
        out, masks = renderer.render(frames, out_idx)
        with clock("write"):
            sink(out, masks)
        report("render", int(out_idx[-1]) + 1, total)
    notes = list(track.notes) + ([matched.note] if matched.note else [])
    return LipSyncResult(total, video.fps, matched.wave, motion, track, notes, clock.seconds, matched.frame_indices)


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
    **options,
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
    video = inputs.video
    policy = options.get("length_policy", "trim_to_audio")
    report = options.get("progress") or (lambda stage, done, total: None)
    start = time.perf_counter()
    track_first = track_source(video, models.renderer.config.crop_size, lambda d, t: report("track", d, t),
                               options.get("interrupt", _nothing), "video", **(options.get("tracker_options") or {}))
    track_seconds = time.perf_counter() - start
    matched = match_length(video.num_frames, inputs.wave, video.fps, policy)
    with VideoWriter(out_path, video.fps, audio=matched.wave, sample_rate=TARGET_RATE) as writer:
        result = lipsync(video, inputs.wave, models, lambda frames, masks: writer.write(frames),
                         style_video=inputs.style_video, style_wave=inputs.style_wave, track=track_first,
                         matched=matched, **options)  # fmt: skip
    result.seconds = {"track": track_seconds, **result.seconds}
    result.notes.extend(inputs.notes + writer.notes)
    return result
