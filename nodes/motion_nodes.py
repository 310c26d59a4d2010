"""Stage 1 in the graph: the style reference, the lip-motion prediction, and its preview."""

from __future__ import annotations

from typing import Any

from . import graph_types as gt
from ._core import LipSyncInputError, core_module
from .comfy_host import CATEGORY
from .face_nodes import TRACK_CROP_SIZE
from .fps import resolve_fps
from .plumbing import FPS_WIDGET, MODELS_INPUT, VIDEO_INFO_INPUT, check_lengths, frames_of, image_out, mono_16k
from .preview import attention_picture, draw_mouths, motion_curves
from .ui_payload import motion_view_payload


class StyleLipSyncStyleReference:
    DESCRIPTION = (
        "The person's speaking style: n frames of a clip's audio features (keys) and mouth motion (values), as "
        "the paper's audio-aware style reference. By default the input video with its own audio; or connect "
        "another clip of the person (reference frames + their audio), or someone else's for a style transfer."
    )
    CATEGORY = CATEGORY
    FUNCTION = "reference"
    RETURN_TYPES = (gt.STYLE_REFERENCE,)
    RETURN_NAMES = ("style",)
    OUTPUT_TOOLTIPS = ("Reference audio features and mouth params (n frames).",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "models": MODELS_INPUT,
                "max_frames": ("INT", {"default": 256, "min": 8, "max": 4096,
                               "tooltip": "Reference length n (the paper uses 256 frames)."}),
                "reference_fps": FPS_WIDGET,
            },
            "optional": {
                "video_track": (gt.FACE_TRACK, {"tooltip": "The input video's track (default reference)."}),
                "video_audio": ("AUDIO", {"tooltip": "The input video's own audio (what its lips were saying)."}),
                "reference_images": ("IMAGE", {"tooltip": "Another clip's frames: used instead of the video."}),
                "reference_audio": ("AUDIO", {"tooltip": "That clip's own audio."}),
                "reference_video_info": VIDEO_INFO_INPUT,
            },
        }  # fmt: skip

    def reference(
        self, models: Any, max_frames: int, reference_fps: float, video_track: Any = None, video_audio: Any = None,
        reference_images: Any = None, reference_audio: Any = None, reference_video_info: Any = None,
    ) -> tuple[Any]:  # fmt: skip
        stages = core_module("stages")
        if reference_images is not None:
            if reference_audio is None:
                raise LipSyncInputError("reference_audio: reference frames need their own audio; connect it.")
            rate = resolve_fps(("reference_fps", reference_fps), ("reference_video_info", reference_video_info))
            track = core_module("face").track_faces(
                frames_of(reference_images, "reference_images"), rate, crop_size=TRACK_CROP_SIZE,
                input_name="reference_images",
            )
            wave, source = mono_16k(reference_audio, "reference_audio"), "reference clip"
        elif video_track is not None and video_audio is not None:
            track, wave, source = video_track, mono_16k(video_audio, "video_audio"), "input video"
            rate = track.fps
        else:
            raise LipSyncInputError(
                "style: connect video_track + video_audio (the input video), or reference_images + reference_audio."
            )
        analysis = core_module("types").FaceAnalysis.of(track, models.mouth) if track.usable.any() else None
        if analysis is None:
            raise LipSyncInputError(f"style: no face found in the {source}; give a clip where the face is visible.")
        return (stages.style_reference(analysis, wave, models.feature_spec, int(max_frames), source),)


class StyleLipSyncPredictMotion:
    DESCRIPTION = (
        "Stage 1: lip motion (13 mouth params per frame) from the audio features, in the style of the reference. "
        "Shows the mouth opening, the audio level and the attention over the reference on the node."
    )
    CATEGORY = CATEGORY
    FUNCTION = "predict"
    RETURN_TYPES = (gt.LIP_MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("(frames, 13) mouth params and the (frames, n) attention over the reference.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "models": MODELS_INPUT,
                "features": (gt.AUDIO_FEATURES,),
                "style_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                                   "tooltip": "0 = generic style, 1 = the reference's, above 1 exaggerates it."}),
                "mouth_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                "tooltip": "Scales how far the mouth opens (1 = as predicted)."}),
                "close_on_silence": ("BOOLEAN", {"default": False,
                                     "tooltip": "Close the mouth where the audio is silent."}),
            },
            "optional": {"style": (gt.STYLE_REFERENCE, {"tooltip": "Without it, the model's generic style."})},
        }  # fmt: skip

    def predict(
        self, models: Any, features: Any, style_strength: float, mouth_scale: float, close_on_silence: bool,
        style: Any = None,
    ) -> dict[str, Any]:  # fmt: skip
        from .attention import comfy_attention_installed

        ready = models.ready_motion()
        with comfy_attention_installed():
            motion = core_module("stages").predict_motion(
                ready, features, style, style_strength, mouth_scale, bool(close_on_silence)
            )
        opening, envelope = motion_curves(models.mouth, motion, features)
        ui = motion_view_payload(motion.fps, opening, envelope, motion.attention)
        return {"ui": ui, "result": (motion,)}


class StyleLipSyncPreviewMotion:
    DESCRIPTION = (
        "Checks the predicted motion before rendering: the predicted lips (green) drawn over the frames with the "
        "tracked lips (red), and a picture of where each frame attends in the style reference."
    )
    CATEGORY = CATEGORY
    FUNCTION = "preview"
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("overlay", "attention")
    OUTPUT_TOOLTIPS = ("The frames with the lips drawn on.",
                       "Rows: output frames (top down); columns: reference frames; bright = attended.")  # fmt: skip

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "models": MODELS_INPUT,
                "images": ("IMAGE",),
                "track": (gt.FACE_TRACK,),
                "motion": (gt.LIP_MOTION,),
            }
        }

    def preview(self, models: Any, images: Any, track: Any, motion: Any) -> tuple[Any, Any]:
        frames = frames_of(images)
        check_lengths(frames, track, motion)
        overlay = draw_mouths(frames, track, models.mouth, motion.params)
        return image_out(overlay), image_out(attention_picture(motion.attention)[None])


NODE_CLASS_MAPPINGS = {
    "StyleLipSyncStyleReference": StyleLipSyncStyleReference,
    "StyleLipSyncPredictMotion": StyleLipSyncPredictMotion,
    "StyleLipSyncPreviewMotion": StyleLipSyncPreviewMotion,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "StyleLipSyncStyleReference": "StyleLipSync Style Reference",
    "StyleLipSyncPredictMotion": "StyleLipSync Predict Lip Motion",
    "StyleLipSyncPreviewMotion": "StyleLipSync Preview Motion",
}
