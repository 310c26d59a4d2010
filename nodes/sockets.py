"""The graph's sockets and the conversions at them: the pack's own types, the inputs several nodes share,
IMAGE / AUDIO / VIDEO <-> the core's arrays, frame rates from wherever a graph carries them.

Values on the pack's sockets are the frozen contracts of ``lipsync_core.types`` (numpy, device-free) or the
model bundle (nodes/models.py); core types are as ComfyUI defines them: IMAGE [B, H, W, C] float 0..1,
MASK [B, H, W], AUDIO {"waveform": [B, C, T], "sample_rate"} (or VideoHelperSuite's lazy Mapping), VIDEO.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

import numpy as np
import torch
from comfy_api.latest import Input, InputImpl, Types, io

from ..lipsync_core import audio as core_audio
from ..lipsync_core.media import fps_fraction
from ..lipsync_core.render.settings import RenderSettings
from ..lipsync_core.types import (
    DEFAULT_MAX_GAP_SECONDS,
    GAP_POLICIES,
    SAMPLER_NAMES,
    AudioFeatures,
    FaceTrack,
    LipMotion,
    LipSyncInputError,
    StyleReference,
)
from .host import TYPE_PREFIX
from .models import LipSyncModelBundle

# ----------------------------------------------------------------------------- the types at the sockets

Audio = Mapping[str, Any]  # AUDIO: {"waveform": [B, C, T], "sample_rate"}, or VideoHelperSuite's lazy Mapping
VideoInfo = Mapping[str, Any]  # VHS_VIDEOINFO: loaded_fps, source_fps, ...
VideoInput = Input.Video  # VIDEO (comfy_api's VideoInput: VideoFromFile, VideoFromComponents)
ComfyVAE = Any  # VAE: comfy.sd.VAE, which only a host can import

FaceTrackType = io.Custom(f"{TYPE_PREFIX}FACE_TRACK")
AudioFeaturesType = io.Custom(f"{TYPE_PREFIX}AUDIO_FEATURES")
StyleReferenceType = io.Custom(f"{TYPE_PREFIX}STYLE_REFERENCE")
LipMotionType = io.Custom(f"{TYPE_PREFIX}LIP_MOTION")
ModelsType = io.Custom(f"{TYPE_PREFIX}MODELS")
VideoInfoType = io.Custom("VHS_VIDEOINFO")  # VideoHelperSuite's video_info dict: a frame-rate source

CUSTOM_TYPES: dict[str, type] = {
    FaceTrackType.io_type: FaceTrack,
    AudioFeaturesType.io_type: AudioFeatures,
    StyleReferenceType.io_type: StyleReference,
    LipMotionType.io_type: LipMotion,
    ModelsType.io_type: LipSyncModelBundle,
}
"""Socket name -> the class of the values on it (the contract tests check every node's outputs against it)."""

# ----------------------------------------------------------------------------- inputs several nodes share


def models_input() -> io.Input:
    return ModelsType.Input("models", tooltip="From StyleLipSync Load Models.")


def fps_input(name: str = "fps", what: str = "the frames") -> io.Input:
    return io.Float.Input(name, default=0.0, min=0.0, max=1000.0, step=0.001,
                          tooltip=f"Frame rate of {what}. 0 = take it from video_info (VideoHelperSuite); connect "
                          "GetVideoComponents' fps here for core video nodes.")  # fmt: skip


def video_info_input(name: str = "video_info") -> io.Input:
    return VideoInfoType.Input(name, optional=True,
                               tooltip="VideoHelperSuite's video_info: its loaded_fps is used if fps is 0.")


def no_face_inputs(optional: bool = False) -> list[io.Input]:
    return [
        io.Combo.Input("no_face", options=list(GAP_POLICIES), default=GAP_POLICIES[0], optional=optional,
                       tooltip="Frames without a face: 'interpolate' fills in short tracker dropouts within one shot "
                       "(never black frames, cuts, or a hand in front of the face: those pass through); "
                       "'passthrough' leaves every face-less frame untouched."),
        io.Float.Input("max_gap_seconds", default=DEFAULT_MAX_GAP_SECONDS, min=0.0, max=10.0, step=0.05,
                       optional=optional,
                       tooltip="Longest run of face-less frames that may be filled in; longer runs pass through."),
    ]  # fmt: skip


def render_inputs() -> list[io.Input]:
    """Sampler, steps, seed, chunk size: their defaults are the core's RenderSettings defaults."""
    d = RenderSettings()
    return [
        io.Combo.Input("sampler", options=list(SAMPLER_NAMES), default=d.sampler,
                       tooltip="Diffusion sampler of the face renderer."),
        io.Int.Input("steps", default=d.steps, min=1, max=200,
                     tooltip=f"Denoising steps ({d.steps} is the measured default for the demo renderer; "
                             "try more for larger renderers)."),
        io.Int.Input("seed", default=d.seed, min=0, max=2**32 - 1, control_after_generate=True,
                     tooltip="The one initial noise shared by every frame; same seed, same video."),
        io.Int.Input("chunk_size", default=d.chunk_size, min=1, max=512,
                     tooltip="Frames per chunk, rounded up to blocks of 8: memory, never the result, depends on it."),
    ]  # fmt: skip


def footage_inputs(images_tooltip: str, audio_tooltip: str) -> list[io.Input]:
    """Footage as IMAGE + AUDIO + fps (or a VIDEO: :func:`footage`), declared once for the nodes that take it;
    saved workflows' widget values follow this order."""
    return [
        io.Image.Input("images", optional=True, tooltip=images_tooltip),
        io.Audio.Input("audio", optional=True, tooltip=audio_tooltip),
        fps_input(),
    ]


def style_strength_input() -> io.Input:
    """How much of the reference's style stage 1 follows (Predict Lip Motion and the all-in-one node)."""
    return io.Float.Input("style_strength", default=1.0, min=0.0, max=2.0, step=0.05,
                          tooltip="0 = generic style, 1 = the reference's, above 1 exaggerates it.")


def vae_input() -> io.Input:
    return io.Vae.Input("vae", optional=True, tooltip="Optional: a ComfyUI VAE of the family the renderer was "
                        "trained with (instead of the renderer's own).")


# ----------------------------------------------------------------------------- IMAGE, AUDIO


def frames_of(images: Any, name: str = "images") -> np.ndarray:
    """ComfyUI IMAGE [T, H, W, C] -> float32 numpy [T, H, W, 3] (alpha dropped), checked."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        raise LipSyncInputError(f"{name}: expected an IMAGE batch [frames, H, W, 3], got {shape}.")
    return images[..., :3].detach().to("cpu", torch.float32).numpy()


def image_out(frames: np.ndarray) -> torch.Tensor:
    """numpy frames (float 0..1 or uint8) -> ComfyUI IMAGE float32 [T, H, W, 3]."""
    arr = np.asarray(frames)
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr).float() / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def mono_16k(audio: Audio, name: str = "audio") -> np.ndarray:
    """Any ComfyUI AUDIO (dict or VideoHelperSuite's lazy Mapping) -> 16 kHz mono float32, checked."""
    return core_audio.audio_to_mono(audio, name=name)


def audio_of_duration(audio: Audio, seconds: float, name: str = "audio") -> dict[str, Any]:
    """The AUDIO cut or silence-padded to ``seconds``, at its own sample rate and channels (nothing resampled).

    Its samples are cleaned exactly as the command line cleans what it writes (NaN/inf -> 0, integer
    or int-range samples scaled to -1..1), so no node passes broken audio on to a video file.
    """
    rate = int(audio["sample_rate"])
    wave = torch.from_numpy(core_audio.clean_waveform(audio["waveform"], name))[None]
    n = int(round(seconds * rate))
    if wave.shape[-1] >= n:
        wave = wave[..., :n].clone()
    else:
        wave = torch.nn.functional.pad(wave, (0, n - wave.shape[-1]))
    return {"waveform": wave.contiguous(), "sample_rate": rate}


# ----------------------------------------------------------------------------- tracks


def check_lengths(images: np.ndarray, track: FaceTrack, motion: LipMotion | None = None) -> None:
    """Frames, track and motion of one video must have the same number of frames."""
    if len(track) != len(images):
        raise LipSyncInputError(
            f"track: it covers {len(track)} frames but images has {len(images)}; track the same frames you render."
        )
    if motion is not None and len(motion) != len(images):
        raise LipSyncInputError(
            f"motion: {len(motion)} frames for {len(images)} images; put StyleLipSync Match Length before the "
            "chain, or connect the images to the Audio Features node so the features have the video's length."
        )


def track_at_crop_size(track: FaceTrack, crop_size: int) -> FaceTrack:
    """The same track with its crop transforms for the renderer's crop size."""
    if track.crop_size == crop_size:
        return track
    from ..lipsync_core.face import rescale_transforms

    return dataclasses.replace(track, crop_transforms=rescale_transforms(track.crop_transforms, track.crop_size,
                                                                         crop_size), crop_size=int(crop_size))


def track_frames(track: FaceTrack, indices: np.ndarray) -> FaceTrack:
    """The track of the frames ``indices`` of its video (after Match Length cut, looped or held frames)."""
    idx = np.asarray(indices, dtype=np.int64)
    per_frame = ("landmarks", "detected", "usable", "crop_transforms", "rotations")
    return dataclasses.replace(track, **{name: getattr(track, name)[idx] for name in per_frame})


# ----------------------------------------------------------------------------- frame rates

VIDEO_INFO_KEYS = ("loaded_fps", "source_fps", "fps", "frame_rate")
"""VHS_VIDEOINFO keys, best first: ``loaded_fps`` is the rate of the frames VHS actually output
(after force_rate and select_every_nth); ``source_fps`` is the file's own rate."""


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        fps = float(value)  # int, float, numpy scalar, fractions.Fraction
    except (TypeError, ValueError):
        return None
    return fps if math.isfinite(fps) and fps > 0 else None


def fps_of(value: Any) -> float | None:
    """The fps carried by one input (FLOAT, VHS_VIDEOINFO, core VIDEO), or None when it carries none."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, Real):
        return _positive(value)
    if isinstance(value, Mapping):
        return next((fps for key in VIDEO_INFO_KEYS if (fps := _positive(value.get(key))) is not None), None)
    if type(value).__name__ == "VideoFromFile":  # core VIDEO from a file: read the header, decode nothing
        fps = _file_video_fps(value)
        if fps is not None:
            return fps
    get_components = getattr(value, "get_components", None)  # any other core VIDEO
    if callable(get_components):
        return _positive(getattr(get_components(), "frame_rate", None))
    for attr in ("frame_rate", "fps"):
        fps = _positive(getattr(value, attr, None))
        if fps is not None:
            return fps
    return _positive(value) if hasattr(value, "__float__") else None  # e.g. a 0-dim tensor


def _file_video_fps(video: VideoInput) -> float | None:
    """The stream's frame rate from the container header (VideoFromFile.get_components decodes every frame)."""
    try:
        import av

        source = video.get_stream_source()
        if hasattr(source, "seek"):
            source.seek(0)
        with av.open(source) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
        if hasattr(source, "seek"):
            source.seek(0)
        return _positive(rate)
    except Exception:  # noqa: BLE001 - fall back to decoding through get_components
        return None


def resolve_fps(*candidates: tuple[str, Any]) -> float:
    """The first candidate ``(input name, value)`` that carries a frame rate; one line naming them if none does."""
    for _name, value in candidates:
        fps = fps_of(value)
        if fps is not None:
            return fps
    names = " or ".join(name for name, _ in candidates) or "fps"
    raise LipSyncInputError(
        f"{names}: no frame rate given; connect VHS video_info, GetVideoComponents' fps, or set a FLOAT fps > 0."
    )


# ----------------------------------------------------------------------------- VIDEO


def video_parts(video: VideoInput, name: str = "video") -> tuple[torch.Tensor, float, Audio | None]:
    """A core VIDEO -> (IMAGE frames, fps, AUDIO or None when it has no sound)."""
    try:
        parts = video.get_components()
    except Exception as exc:  # noqa: BLE001 - a file that does not decode
        raise LipSyncInputError(f"{name}: the video could not be decoded ({exc}); re-encode it (mp4, H.264).") from exc
    fps = _positive(parts.frame_rate)
    if fps is None:
        raise LipSyncInputError(f"{name}: the video has no frame rate; re-encode it (e.g. ffmpeg -r 25).")
    audio = parts.audio
    if audio is not None and (audio.get("waveform") is None or audio["waveform"].shape[-1] == 0):
        audio = None
    return parts.images, fps, audio


def footage(images: torch.Tensor | None, fps: float, video_info: VideoInfo | None, video: VideoInput | None,
            sound: Audio | None, what: str) -> tuple[np.ndarray, float, Audio | None]:
    """The footage's frames (checked), their rate and their sound, however the graph brings them: a connected
    VIDEO's frames at its rate (unless fps is set) with ``sound`` if connected, else its own; or images at fps
    or video_info's rate with ``sound``. ``what``: the frames' name in the message when none are connected."""
    frames, rate = images, None
    if video is not None:
        frames, video_fps, own = video_parts(video)
        rate = resolve_fps(("fps", fps), ("video", video_fps))
        sound = own if sound is None else sound
    if frames is None:
        raise LipSyncInputError(f"images: not connected; connect {what} (IMAGE) or a VIDEO.")
    return frames_of(frames), rate or resolve_fps(("fps", fps), ("video_info", video_info)), sound


def video_out(images: torch.Tensor, audio: Audio | None, fps: float) -> VideoInput:
    """A core VIDEO of frames, their audio and rate, ready for SaveVideo."""
    components = Types.VideoComponents(images=images, audio=audio, frame_rate=fps_fraction(fps))
    return InputImpl.VideoFromComponents(components)
