"""Stage 2 in the graph (StyleLipSyncRender) and the whole job in one node (StyleLipSyncLipSync)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import graph_types as gt
from ._core import core_module
from .attention import comfy_attention_installed
from .comfy_host import CATEGORY
from .fps import resolve_fps
from .lipsync_models import codec_for
from .plumbing import (
    FPS_WIDGET,
    LENGTH_POLICIES,
    MODELS_INPUT,
    NO_FACE_WIDGETS,
    RENDER_WIDGETS,
    VIDEO_INFO_INPUT,
    audio_of_duration,
    check_lengths,
    frames_of,
    image_out,
    mono_16k,
    track_at_crop_size,
    tracker_options,
)  # fmt: skip
from .progress import Progress, check_interrupted

VAE_INPUT = ("VAE", {"tooltip": "Optional: a ComfyUI VAE of the family the renderer was trained with "
                     "(instead of the renderer's own)."})  # fmt: skip
QUALITY_WIDGETS: dict[str, tuple] = {
    "color_match": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05,
                              "tooltip": "How much the repainted mouth's colours are matched to the frame."}),
    "reference_images": ("INT", {"default": 3, "min": 1, "max": 16,
                                 "tooltip": "Frames of the video shown to the renderer as appearance reference."}),
}  # fmt: skip


def _settings(sampler: str, steps: int, seed: int, chunk_size: int, color_match: float, reference_images: int) -> Any:
    return core_module("pipeline").RenderSettings(
        sampler=sampler, steps=int(steps), seed=int(seed), chunk_size=int(chunk_size), color_match=float(color_match),
        reference_images=int(reference_images),
    )  # fmt: skip


class StyleLipSyncRender:
    DESCRIPTION = (
        "Stage 2: repaints the lower half of the face in every frame to follow the lip motion (latent diffusion "
        "with the same initial noise for every frame), pasted back with a feathered mask. Frames without a face "
        "pass through. Renders in chunks: progress per chunk, Cancel stops after the current chunk."
    )
    CATEGORY = CATEGORY
    FUNCTION = "render"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("images", "mask")
    OUTPUT_TOOLTIPS = ("The lip-synced frames (same count as the input).", "Where each frame was repainted (0..1).")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "models": MODELS_INPUT,
                "images": ("IMAGE", {"tooltip": "The video frames (same frames the track was made from)."}),
                "track": (gt.FACE_TRACK,),
                "motion": (gt.LIP_MOTION,),
                **RENDER_WIDGETS,
                **QUALITY_WIDGETS,
            },
            "optional": {
                "style": (gt.STYLE_REFERENCE, {"tooltip": "If it carries face crops, they are the appearance "
                                               "reference; otherwise frames of the video are."}),
                "vae": VAE_INPUT,
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }  # fmt: skip

    def render(
        self, models: Any, images: Any, track: Any, motion: Any, sampler: str, steps: int, seed: int,
        chunk_size: int, color_match: float, reference_images: int, style: Any = None, vae: Any = None,
        unique_id: str | None = None,
    ) -> tuple[Any, Any]:  # fmt: skip
        stages = core_module("stages")
        frames = frames_of(images)
        check_lengths(frames, track, motion)
        settings = _settings(sampler, steps, seed, chunk_size, color_match, reference_images)
        codec = codec_for(models, vae)
        ready = models.ready()
        track = track_at_crop_size(track, ready.renderer.config.crop_size)
        analysis = core_module("types").FaceAnalysis.of(track, ready.mouth)
        bar = Progress(len(frames), unique_id)

        def before_chunk() -> None:
            check_interrupted()
            models.ready()  # model management may have moved them between chunks

        with comfy_attention_installed():
            out, masks = stages.concat(stages.render(
                ready, analysis, motion, core_module("media").ArrayFrames(frames, track.fps), settings=settings,
                codec=codec, progress=lambda done, _total: bar.set(done), before_chunk=before_chunk,
                step_callback=lambda _step: check_interrupted(),  # Cancel never waits for a long chunk
            ))  # fmt: skip
        return image_out(out), torch.from_numpy(masks)


class StyleLipSyncLipSync:
    DESCRIPTION = (
        "The whole job in one node: video frames + new audio -> lip-synced frames + the audio cut to match. "
        "The style reference is the video itself with its own audio unless a style clip is connected. Plug the "
        "outputs into VHS Video Combine or Create Video."
    )
    CATEGORY = CATEGORY
    FUNCTION = "lipsync"
    RETURN_TYPES = ("IMAGE", "AUDIO", "MASK", "FLOAT")
    RETURN_NAMES = ("images", "audio", "mask", "fps")
    OUTPUT_TOOLTIPS = ("The lip-synced frames.", "The new audio, exactly as long as the frames (its own rate).",
                       "Where each frame was repainted.", "The frames' rate, for Create Video.")  # fmt: skip

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "models": MODELS_INPUT,
                "images": ("IMAGE", {"tooltip": "The video frames."}),
                "audio": ("AUDIO", {"tooltip": "The new speech."}),
                "fps": FPS_WIDGET,
                "length_policy": (list(LENGTH_POLICIES), {"default": "trim_to_audio",
                                  "tooltip": "When video and audio differ in length (see Match Length)."}),
                "style_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05}),
                **RENDER_WIDGETS,
            },
            "optional": {
                "video_info": VIDEO_INFO_INPUT,
                "video_audio": ("AUDIO", {"tooltip": "The video's own audio: makes the video its own style "
                                "reference (recommended)."}),
                "style_images": ("IMAGE", {"tooltip": "A style clip's frames (another clip of the person, or "
                                 "someone else's for style transfer)."}),
                "style_audio": ("AUDIO", {"tooltip": "The style clip's own audio."}),
                "style_fps": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1000.0, "step": 0.001,
                              "tooltip": "The style clip's frame rate; 0 = the video's."}),
                "vae": VAE_INPUT,
                **NO_FACE_WIDGETS,  # optional (last): workflows saved before they existed still load
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }  # fmt: skip

    def lipsync(
        self, models: Any, images: Any, audio: Any, fps: float, length_policy: str, style_strength: float,
        sampler: str, steps: int, seed: int, chunk_size: int, video_info: Any = None, video_audio: Any = None,
        style_images: Any = None, style_audio: Any = None, style_fps: float = 0.0, vae: Any = None,
        no_face: str = NO_FACE_WIDGETS["no_face"][1]["default"],
        max_gap_seconds: float = NO_FACE_WIDGETS["max_gap_seconds"][1]["default"], unique_id: str | None = None,
    ) -> tuple[Any, ...]:  # fmt: skip
        pipeline = core_module("pipeline")
        media = core_module("media")
        rate = resolve_fps(("fps", fps), ("video_info", video_info))
        frames = frames_of(images)
        wave = mono_16k(audio)  # checked (and cleaned) before any model work
        style_video = style_wave = None
        if style_images is not None:
            style_frames = frames_of(style_images, "style_images")
            style_video = media.ArrayFrames(style_frames, style_fps or rate, "style_images")
            if style_audio is None:
                from ._core import LipSyncInputError

                raise LipSyncInputError("style_audio: not connected; a style clip needs its own sound: connect the "
                                        "style clip's AUDIO, or disconnect style_images to use the input video.")
            style_wave = mono_16k(style_audio, "style_audio")
        elif video_audio is not None:
            style_wave = mono_16k(video_audio, "video_audio")
        settings = _settings(sampler, steps, seed, chunk_size, 0.5, 3)
        codec = codec_for(models, vae)
        bar = Progress(len(frames), unique_id)
        outputs: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        with comfy_attention_installed():
            options = pipeline.JobOptions(settings=settings, length_policy=length_policy,
                                          style_strength=float(style_strength),
                                          tracker_options=tracker_options(no_face, max_gap_seconds, rate))
            result = pipeline.lipsync(
                media.ArrayFrames(frames, rate, "images"), wave, models.ready(),
                lambda out, mask: (outputs.append(out), masks.append(mask)),
                style_video=style_video, style_wave=style_wave, options=options, codec=codec,
                progress=lambda stage, done, total: bar.set(done, total),
            )  # fmt: skip
        new_audio = audio_of_duration(audio, result.num_frames / rate)
        mask = torch.from_numpy(np.concatenate(masks).astype(np.float32))
        return image_out(np.concatenate(outputs)), new_audio, mask, float(rate)


NODE_CLASS_MAPPINGS = {"StyleLipSyncRender": StyleLipSyncRender, "StyleLipSyncLipSync": StyleLipSyncLipSync}
NODE_DISPLAY_NAME_MAPPINGS = {"StyleLipSyncRender": "StyleLipSync Render",
                              "StyleLipSyncLipSync": "StyleLipSync Lip Sync (all in one)"}  # fmt: skip
