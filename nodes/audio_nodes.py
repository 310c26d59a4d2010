"""StyleLipSyncAudioFeatures (AUDIO / AUDIO_ENCODER_OUTPUT -> features per video frame) and
StyleLipSyncMatchLength (reconcile a video's and an audio's lengths)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import graph_types as gt
from ._core import LipSyncInputError, core_module
from .comfy_host import CATEGORY
from .fps import resolve_fps
from .plumbing import (
    FPS_WIDGET,
    LENGTH_POLICIES,
    MODELS_INPUT,
    VIDEO_INFO_INPUT,
    audio_of_duration,
    check_lengths,
    frames_of,
    image_out,
    mono_16k,
    track_frames,
)  # fmt: skip


class StyleLipSyncAudioFeatures:
    DESCRIPTION = (
        "Audio features aligned to the video's frames, of the kind the motion model was trained on: weight-free "
        "log-mel from any AUDIO, or ComfyUI's AUDIO_ENCODER_OUTPUT (wav2vec2 / whisper encoders of the core "
        "Audio Encoder nodes) for models trained on those."
    )
    CATEGORY = CATEGORY
    FUNCTION = "features"
    RETURN_TYPES = (gt.AUDIO_FEATURES,)
    RETURN_NAMES = ("features",)
    OUTPUT_TOOLTIPS = ("(frames, D) features plus silence flags, one row per video frame.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "models": MODELS_INPUT,
                "fps": FPS_WIDGET,
                "num_frames": ("INT", {"default": 0, "min": 0, "max": 10**7,
                               "tooltip": "Frames to compute; 0 = as many as the images (if connected), "
                               "else the audio's duration."}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "The new speech (also used for the silence flags)."}),
                "audio_encoder_output": ("AUDIO_ENCODER_OUTPUT", {"tooltip": "Core Audio Encoder Encode output."}),
                "images": ("IMAGE", {"tooltip": "The video frames: only their count is used."}),
                "video_info": VIDEO_INFO_INPUT,
            },
        }  # fmt: skip

    def features(
        self, models: Any, fps: float, num_frames: int, audio: Any = None, audio_encoder_output: Any = None,
        images: Any = None, video_info: Any = None,
    ) -> tuple[Any]:  # fmt: skip
        rate = resolve_fps(("fps", fps), ("video_info", video_info))
        count = int(num_frames) or (len(images) if images is not None else None)
        spec = models.feature_spec
        audio_mod = core_module("audio")
        if audio_encoder_output is not None:
            feats = audio_mod.features_from_audio_encoder_output(audio_encoder_output, rate, count)
            if audio is not None:
                wave = mono_16k(audio)
                feats.silence = audio_mod.detect_silence(wave, rate, len(feats))
            feats.spec.check_compatible(spec, "audio_encoder_output")
        elif audio is not None:
            wave = mono_16k(audio)
            count = count or max(audio_mod.duration_frames(len(wave), audio_mod.TARGET_RATE, rate), 1)
            feats = core_module("stages").audio_features(wave, rate, count, spec)
        else:
            raise LipSyncInputError("audio: connect an AUDIO (or an AUDIO_ENCODER_OUTPUT) to compute features from.")
        return (feats,)


class StyleLipSyncMatchLength:
    DESCRIPTION = (
        "Makes the video and the audio the same length: trim to the audio, trim to the video, loop or ping-pong "
        "the video, or pad the audio with silence. The audio keeps its sample rate and channels."
    )
    CATEGORY = CATEGORY
    FUNCTION = "match"
    RETURN_TYPES = ("IMAGE", "AUDIO", "INT", gt.FACE_TRACK)
    RETURN_NAMES = ("images", "audio", "frame_count", "track")
    OUTPUT_TOOLTIPS = ("The frames, cut or extended.", "The audio, cut or padded to exactly the frames' duration.",
                       "Number of frames out.", "The track of the frames out (when a track is connected).")  # fmt: skip

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE",),
                "audio": ("AUDIO",),
                "fps": FPS_WIDGET,
                "policy": (list(LENGTH_POLICIES), {"default": "trim_to_audio",
                           "tooltip": "trim_to_audio: as long as the audio (last frame held if the video is "
                           "shorter); trim_to_video: as long as the video; loop / ping_pong: repeat the video over "
                           "the audio; pad_silence: the longer of the two, audio padded."}),
            },
            "optional": {
                "video_info": VIDEO_INFO_INPUT,
                "track": (gt.FACE_TRACK, {"tooltip": "The frames' track: comes out matching the frames out, so "
                          "the video is tracked once, before its length changes."}),
            },
        }  # fmt: skip

    def match(
        self, images: Any, audio: Any, fps: float, policy: str, video_info: Any = None, track: Any = None
    ) -> tuple[Any, ...]:
        rate = resolve_fps(("fps", fps), ("video_info", video_info))
        frames = frames_of(images)
        if track is not None:
            check_lengths(frames, track)
        matched = core_module("audio").match_length(len(frames), mono_16k(audio), rate, policy)
        idx = np.asarray(matched.frame_indices)
        new_track = track_frames(track, idx) if track is not None else None
        new_audio = audio_of_duration(audio, matched.num_frames / rate)
        return image_out(frames[idx]), new_audio, int(matched.num_frames), new_track


NODE_CLASS_MAPPINGS = {"StyleLipSyncAudioFeatures": StyleLipSyncAudioFeatures,
                       "StyleLipSyncMatchLength": StyleLipSyncMatchLength}  # fmt: skip
NODE_DISPLAY_NAME_MAPPINGS = {"StyleLipSyncAudioFeatures": "StyleLipSync Audio Features",
                              "StyleLipSyncMatchLength": "StyleLipSync Match Length"}  # fmt: skip
