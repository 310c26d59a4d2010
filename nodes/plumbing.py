"""Small conversions every lip-sync node shares: widgets, IMAGE <-> numpy, AUDIO in and out, length checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from . import graph_types as gt
from ._core import LipSyncInputError, core_module

FPS_WIDGET = (
    "FLOAT",
    {
        "default": 0.0, "min": 0.0, "max": 1000.0, "step": 0.001,
        "tooltip": "Frame rate of the frames. 0 = take it from video_info (VideoHelperSuite); connect "
        "GetVideoComponents' fps here for core video nodes.",
    },
)  # fmt: skip
VIDEO_INFO_INPUT = ("VHS_VIDEOINFO", {"tooltip": "VideoHelperSuite's video_info: its loaded_fps is used if fps is 0."})
MODELS_INPUT = (gt.MODELS, {"tooltip": "From StyleLipSync Load Models."})
SAMPLERS = core_module("render.settings").SAMPLER_NAMES
LENGTH_POLICIES = ("trim_to_audio", "trim_to_video", "loop", "ping_pong", "pad_silence")  # audio.length's, reordered
FACE_CHOICES = ("largest", "leftmost", "rightmost", "center", "identity")  # face.tracking's (contract-tested)
GAP_POLICIES = core_module("types").GAP_POLICIES
DEFAULT_MAX_GAP_SECONDS = core_module("types").DEFAULT_MAX_GAP_SECONDS
NO_FACE_WIDGETS: dict[str, tuple] = {
    "no_face": (list(GAP_POLICIES), {"default": GAP_POLICIES[0],
                "tooltip": "Frames without a face: 'interpolate' fills in short tracker dropouts within one shot "
                "(never black frames, cuts, or a hand in front of the face: those pass through); 'passthrough' "
                "leaves every face-less frame untouched."}),
    "max_gap_seconds": ("FLOAT", {"default": DEFAULT_MAX_GAP_SECONDS, "min": 0.0, "max": 10.0, "step": 0.05,
                        "tooltip": "Longest run of face-less frames that may be filled in; longer runs pass "
                        "through."}),
}  # fmt: skip

RENDER_WIDGETS: dict[str, tuple] = {
    "sampler": (list(SAMPLERS), {"default": "ddim", "tooltip": "Diffusion sampler of the face renderer."}),
    "steps": ("INT", {"default": 10, "min": 1, "max": 200, "tooltip": "Denoising steps (10 is the measured default)."}),
    "seed": ("INT", {"default": 0, "min": 0, "max": 2**32 - 1, "control_after_generate": True,
                     "tooltip": "The one initial noise shared by every frame; same seed, same video."}),
    "chunk_size": ("INT", {"default": 16, "min": 1, "max": 512,
                           "tooltip": "Frames per chunk, rounded up to blocks of 8: memory, never the result, "
                           "depends on it."}),
}  # fmt: skip


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


def mono_16k(audio: Any, name: str = "audio") -> np.ndarray:
    """Any ComfyUI AUDIO (dict or VideoHelperSuite's lazy Mapping) -> 16 kHz mono float32."""
    return core_module("audio").audio_to_mono(audio, name=name)


def audio_of_duration(audio: Mapping, seconds: float, name: str = "audio") -> dict[str, Any]:
    """The AUDIO cut or silence-padded to ``seconds``, at its own sample rate and channels (nothing resampled).

    Its samples are cleaned exactly as the command line cleans what it writes (NaN/inf -> 0, integer
    or int-range samples scaled to -1..1), so no node passes broken audio on to a video file.
    """
    rate = int(audio["sample_rate"])
    wave = torch.from_numpy(core_module("audio.io").clean_waveform(audio["waveform"], name))[None]
    n = int(round(seconds * rate))
    if wave.shape[-1] >= n:
        wave = wave[..., :n].clone()
    else:
        wave = torch.nn.functional.pad(wave, (0, n - wave.shape[-1]))
    return {"waveform": wave.contiguous(), "sample_rate": rate}


def check_lengths(images: np.ndarray, track: Any, motion: Any | None = None) -> None:
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


def track_at_crop_size(track: Any, crop_size: int) -> Any:
    """The same track with its crop transforms for the renderer's crop size."""
    if track.crop_size == crop_size:
        return track
    import dataclasses

    rescale = core_module("face.align").rescale_transforms
    return dataclasses.replace(
        track, crop_transforms=rescale(track.crop_transforms, track.crop_size, crop_size), crop_size=int(crop_size)
    )


def tracker_options(no_face: str, max_gap_seconds: float, fps: float) -> dict[str, Any]:
    """The no-face widgets as FaceTracker options."""
    return {"gap_policy": no_face, "max_gap_frames": int(round(float(max_gap_seconds) * fps))}


def track_frames(track: Any, indices: np.ndarray) -> Any:
    """The track of the frames ``indices`` of its video (after Match Length cut, looped or held frames)."""
    import dataclasses

    idx = np.asarray(indices, dtype=np.int64)
    per_frame = ("landmarks", "detected", "usable", "crop_transforms", "rotations")
    return dataclasses.replace(track, **{name: getattr(track, name)[idx] for name in per_frame})
