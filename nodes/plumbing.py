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
SAMPLERS = ("ddim", "dpmpp_2m", "unipc", "euler")  # lipsync_core.render.sampling.SAMPLERS (contract-tested)
LENGTH_POLICIES = ("trim_to_audio", "trim_to_video", "loop", "ping_pong", "pad_silence")  # audio.length's, reordered
FACE_CHOICES = ("largest", "leftmost", "rightmost", "center", "identity")  # face.tracking's (contract-tested)
GAP_POLICIES = ("interpolate", "passthrough")

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


def audio_of_duration(audio: Mapping, seconds: float) -> dict[str, Any]:
    """The AUDIO cut or silence-padded to ``seconds``, at its own sample rate and channels (nothing resampled)."""
    rate = int(audio["sample_rate"])
    wave = torch.as_tensor(audio["waveform"]).detach().float().cpu()
    if wave.ndim == 1:
        wave = wave[None, None]
    elif wave.ndim == 2:
        wave = wave[None]
    wave = wave[:1]
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


def track_frames(track: Any, indices: np.ndarray) -> Any:
    """The track of the frames ``indices`` of its video (after Match Length cut, looped or held frames)."""
    import dataclasses

    idx = np.asarray(indices, dtype=np.int64)
    per_frame = ("landmarks", "detected", "usable", "crop_transforms", "rotations")
    return dataclasses.replace(track, **{name: getattr(track, name)[idx] for name in per_frame})
