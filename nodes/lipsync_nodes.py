"""The nodes: each a V3 schema (ids, input names and types as in 0.1, so saved workflows load) and an
``execute`` of a few lines that calls one staged function of lipsync_core."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from comfy_api.latest import io

from ..lipsync_core import audio as core_audio
from ..lipsync_core.media import ArrayFrames, read_video
from ..lipsync_core.render.cache import RenderCache
from ..lipsync_core.render.settings import RenderSettings
from ..lipsync_core.train.personalize import INPUTS_FILE, RECORD_FILE, WORK_DIR  # light: numpy and types
from ..lipsync_core.types import (
    DEFAULT_MAX_GAP_SECONDS,
    DEFAULT_REFERENCE_FRAMES,
    DEMO_CLIPS,
    FACE_BACKENDS,
    FACE_CHOICES,
    GAP_POLICIES,
    LENGTH_POLICIES,
    MODEL_FILES,
    AudioFeatures,
    FaceAnalysis,
    FaceTrack,
    LipMotion,
    LipSyncInputError,
    StyleReference,
    tracker_options,
)
from .host import (
    CATEGORY,
    MODEL_FOLDER,
    Progress,
    check_interrupted,
    comfy_attention_installed,
    default_devices,
    make_room,
    model_filenames,
    model_folder_paths,
    models_save_folder,
    release_cache,
    resolve_model_path,
)
from .models import (
    DEMO_CHOICE,
    DEMO_FOLDER,
    MODEL_CACHE,
    NO_VAE,
    PREPARED,
    LipSyncModelBundle,
    bundle_fingerprint,
    codec_for,
    describe_weights,
    file_key,
    inspect_weights_file,
    load_bundle,
)
from .sockets import (
    Audio,
    AudioFeaturesType,
    ComfyVAE,
    FaceTrackType,
    LipMotionType,
    ModelsType,
    StyleReferenceType,
    VideoInfo,
    VideoInput,
    audio_of_duration,
    check_lengths,
    footage,
    footage_inputs,
    fps_input,
    frames_of,
    image_out,
    models_input,
    mono_16k,
    no_face_inputs,
    render_inputs,
    resolve_fps,
    style_strength_input,
    track_at_crop_size,
    track_frames,
    vae_input,
    video_info_input,
    video_out,
)
from .views import TEXT_KEY, attention_picture, draw_mouths, motion_curves, motion_view_payload

TRACK_CROP_SIZE = 256  # the Track node's own crop without models; the render node rescales it
ALL_FILES = "(all files)"
FOLDER_OPTION = {"stylelipsync_folder": MODEL_FOLDER}  # the combos that list models/stylelipsync (web, checks)


def _out(kind: type, name: str, tooltip: str) -> io.Output:
    """An output named as in 0.1 (V3 output ids may not repeat an input's, the shown name may)."""
    return kind.Output(f"{name}_out", display_name=name, tooltip=tooltip)


def _schema(node_id: str, title: str, description: str, inputs: list[io.Input], outputs: list[io.Output],
            **options: Any) -> io.Schema:
    """A node's schema in the pack's category, its display name "StyleLipSync <title>"."""
    return io.Schema(node_id=node_id, display_name=f"StyleLipSync {title}", category=CATEGORY, description=description,
                     inputs=inputs, outputs=outputs, **options)


def _node_id(cls: type[io.ComfyNode]) -> str | None:
    """The graph's id of the running node (for its progress bar); None when called outside a host."""
    return getattr(cls.hidden, "unique_id", None) if cls.hidden is not None else None


def _file_combo(name: str, choices: list[str], tooltip: str) -> io.Input:
    """A combo of model files; its options say which folder it lists (the web extension and the checks read it)."""
    combo = io.Combo.Input(name, options=[*choices, *model_filenames()], default=choices[0], tooltip=tooltip)
    combo.extra_dict = dict(FOLDER_OPTION)
    return combo


def _model_combo(name: str, tooltip: str, *extra: str) -> io.Input:
    return _file_combo(name, [DEMO_CHOICE, *extra], tooltip)


class LoadModels(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "StyleLipSyncLoadModels", "Load Models",
            "Loads the StyleLipSync models from models/stylelipsync (extra_model_paths.yaml works) or "
            "the demo weights shipped with the pack. Loaded once and shared by every node and run; ComfyUI "
            "offloads them when other models need the memory.",
            [
                _model_combo("motion_model", "Stage 1: audio + style reference -> lip motion."),
                _model_combo("renderer", "Stage 2: the latent diffusion face renderer."),
                _model_combo("mouth_model", "The linear mouth model (landmarks <-> 13 mouth params)."),
                _model_combo("vae", "The renderer's own VAE; or none, and connect a ComfyUI VAE of the same family "
                             "to the render node.", NO_VAE),
            ],
            [_out(ModelsType, "models", "Stage 1 (lip motion), stage 2 (renderer), the mouth "
                                       "model and the renderer's VAE.")],
        )  # fmt: skip

    @classmethod
    def fingerprint_inputs(cls, motion_model: str, renderer: str, mouth_model: str, vae: str = NO_VAE) -> str:
        return bundle_fingerprint(motion_model, renderer, mouth_model, vae)  # a replaced file reloads

    @classmethod
    def execute(cls, motion_model: str, renderer: str, mouth_model: str, vae: str = NO_VAE) -> io.NodeOutput:
        return io.NodeOutput(load_bundle(motion_model, renderer, mouth_model, vae))


class ModelInfo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "StyleLipSyncModelInfo", "Model Info",
            "Inspects StyleLipSync weights in models/stylelipsync (or any folder registered for "
            "'stylelipsync' in extra_model_paths.yaml): kind, format version, stored config, parameter count, "
            "and whether the file is whole. Reads headers only.",
            [_file_combo("model", [ALL_FILES, DEMO_CHOICE], "One file of the models folder, the demo weights "
                                "shipped with the pack, or all of them (the demo weights first).")],
            [_out(io.String, "report", "One readable paragraph per file."),
                     _out(io.String, "details_json", "The same facts as JSON (a list, one object per file).")],
            is_output_node=True,
        )  # fmt: skip

    @classmethod
    def selected(cls, model: str) -> list[Path]:
        """The files behind a choice: the shipped demo weights (those present), folder files, or both."""
        demo = [path for path in (DEMO_FOLDER / name for name in MODEL_FILES.values()) if path.is_file()]
        if model == DEMO_CHOICE:
            return demo
        if model == ALL_FILES:
            return demo + [resolve_model_path(name) for name in model_filenames()]
        return [resolve_model_path(model)]

    @classmethod
    def fingerprint_inputs(cls, model: str) -> str:
        """Re-run when a selected file is replaced or the folder's contents change."""
        try:
            return str([file_key(p) for p in cls.selected(model)])
        except Exception:  # noqa: BLE001 - validation reports the real problem
            return "unavailable"

    @classmethod
    def execute(cls, model: str) -> io.NodeOutput:
        import json

        infos = [{**MODEL_CACHE.get(path, inspect_weights_file, kind="header"), "shipped": path.parent == DEMO_FOLDER}
                 for path in cls.selected(model)]  # fmt: skip
        folders = ", ".join(model_folder_paths()) or "models/stylelipsync"
        if infos:
            report = "\n\n".join(describe_weights(info) for info in infos)
            if all(info["shipped"] for info in infos) and model == ALL_FILES:
                report += f"\n\nNo .safetensors files in {folders} (only the shipped demo weights)."
        elif model == DEMO_CHOICE:
            report = f"The demo weights are not installed (lipsync_core/assets/demo_models is empty); use {folders}."
        else:
            report = f"No .safetensors files in {folders}."
        return io.NodeOutput(report, json.dumps(infos, indent=1, sort_keys=True), ui={TEXT_KEY: [report]})


class DemoMedia(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "StyleLipSyncDemoMedia", "Demo Media",
            "The demo clips shipped with the pack, so every template runs right after install: a "
            "puppet speaking (frames, its own sound, fps, and as a VIDEO), new speech to lip-sync it to, "
            "another speaker's clip for a style transfer, and more footage of the puppet to personalize on.",
            [],
            [
                _out(io.Image, "images", "The input clip's frames."),
                _out(io.Float, "fps", "Their frame rate."),
                _out(io.Audio, "video_audio", "The clip's own sound (its style reference)."),
                _out(io.Audio, "audio", "New speech of the same speaker, to lip-sync the clip to."),
                _out(io.Image, "style_images", "Another speaker's clip: frames."),
                _out(io.Audio, "style_audio", "Another speaker's clip: its own sound."),
                _out(io.Video, "video", "The input clip as a VIDEO with its own sound."),
                _out(io.Video, "footage", "More of the input clip's speaker (two clips, 5.3 s, with their sound): "
                     "footage to personalize the models on."),
            ],
        )  # fmt: skip

    @classmethod
    def execute(cls) -> io.NodeOutput:
        frames, fps = read_video(DEMO_CLIPS / "video.mp4", "demo video")
        more, _ = read_video(DEMO_CLIPS / "reference.mp4", "demo video")
        style_frames, _ = read_video(DEMO_CLIPS / "other_style.mp4", "demo style clip")
        own, speech, style, more_sound = (core_audio.read_audio_file(DEMO_CLIPS / f"{name}.wav")
                                          for name in ("video", "target", "other_style", "reference"))  # fmt: skip
        footage_sound = core_audio.make_audio(np.concatenate([own[0], more_sound[0]], axis=-1), own[1])
        own, speech, style = (core_audio.make_audio(*sound) for sound in (own, speech, style))
        images = image_out(frames)
        return io.NodeOutput(images, float(fps), own, speech, image_out(style_frames), style,
                             video_out(images, own, fps),
                             video_out(image_out(np.concatenate([frames, more])), footage_sound, fps))


class TrackFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "StyleLipSyncTrackFaces", "Track Faces",
            "Finds and follows one face through the frames (MediaPipe Face Mesh, or insightface when "
            "its models are installed). Frames without a face pass through untouched, except short tracker "
            "dropouts within one shot, which are interpolated; the frame count never changes.",
            [
                io.Image.Input("images", tooltip="The video frames."),
                fps_input(),
                io.Combo.Input("backend", options=list(FACE_BACKENDS), default=FACE_BACKENDS[0],
                               tooltip="torch: MediaPipe's face mesh ported to torch (shipped, GPU); mediapipe: "
                               "the mediapipe package if installed; insightface needs "
                               "models/insightface/models/buffalo_l."),
                io.Combo.Input("face_choice", options=list(FACE_CHOICES), default=FACE_CHOICES[0],
                               tooltip="Which face to follow when there are several ('identity' needs backend "
                               "insightface and a reference_face)."),
                *no_face_inputs(),
                ModelsType.Input("models", optional=True, tooltip="Connect to track at the renderer's crop size "
                                 "(exactly as the all-in-one node does); without it the render node rescales a "
                                 "256-px track."),
                video_info_input(),
                io.Image.Input("reference_face", optional=True,
                               tooltip="A photo of the person to follow (face_choice identity)."),
            ],
            [_out(FaceTrackType, "track", "Per-frame landmarks, crop transforms and head pose."),
                     _out(io.String, "notes", "What happened to face-less frames.")],
        )  # fmt: skip

    @classmethod
    def execute(cls, images: torch.Tensor, fps: float, backend: str, face_choice: str, no_face: str,
                max_gap_seconds: float, models: LipSyncModelBundle | None = None, video_info: VideoInfo | None = None,
                reference_face: torch.Tensor | None = None) -> io.NodeOutput:  # fmt: skip
        rate = resolve_fps(("fps", fps), ("video_info", video_info))
        crop = int(models.renderer_config.crop_size) if models is not None else TRACK_CROP_SIZE
        reference = {} if reference_face is None else {"reference_image": frames_of(reference_face, "reference_face")}
        from ..lipsync_core.face import track_faces

        options = tracker_options(no_face, max_gap_seconds, rate, default_devices()[0])
        track = track_faces(frames_of(images), rate, backend=backend, crop_size=crop, face_choice=face_choice,
                            input_name="images", **options, **reference)
        notes = "\n".join([f"{int(track.usable.sum())} of {len(track)} frames have a face.", *track.notes])
        return io.NodeOutput(track, notes)


class AudioFeaturesNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "StyleLipSyncAudioFeatures", "Audio Features",
            "Audio features aligned to the video's frames, of the kind the motion model was trained "
            "on: weight-free log-mel from any AUDIO, or ComfyUI's AUDIO_ENCODER_OUTPUT (wav2vec2 / whisper "
            "encoders of the core Audio Encoder nodes) for models trained on those.",
            [
                models_input(),
                fps_input(),
                io.Int.Input("num_frames", default=0, min=0, max=10**7, tooltip="Frames to compute; 0 = as many "
                             "as the images (if connected), else the audio's duration."),
                io.Audio.Input("audio", optional=True, tooltip="The new speech (also used for the silence flags)."),
                io.AudioEncoderOutput.Input("audio_encoder_output", optional=True,
                                            tooltip="Core Audio Encoder Encode output."),
                io.Image.Input("images", optional=True, tooltip="The video frames: only their count is used."),
                video_info_input(),
            ],
            [_out(AudioFeaturesType, "features", "(frames, D) features plus silence flags, one "
                                              "row per video frame.")],
        )  # fmt: skip

    @classmethod
    def execute(cls, models: LipSyncModelBundle, fps: float, num_frames: int, audio: Audio | None = None,
                audio_encoder_output: Mapping[str, Any] | None = None,
                images: torch.Tensor | None = None, video_info: VideoInfo | None = None) -> io.NodeOutput:  # fmt: skip
        rate = resolve_fps(("fps", fps), ("video_info", video_info))
        count = int(num_frames) or (len(images) if images is not None else None)
        from ..lipsync_core import stages

        spec = models.feature_spec
        if audio_encoder_output is not None:
            feats = core_audio.features_from_audio_encoder_output(audio_encoder_output, rate, count)
            if audio is not None:
                feats = dataclasses.replace(feats, silence=core_audio.detect_silence(mono_16k(audio), rate, len(feats)))
            feats.spec.check_compatible(spec, "audio_encoder_output")
        elif audio is not None:
            wave = mono_16k(audio)
            count = count or max(core_audio.duration_frames(len(wave), core_audio.TARGET_RATE, rate), 1)
            feats = stages.audio_features(wave, rate, count, spec)
        else:
            raise LipSyncInputError("audio: connect an AUDIO (or an AUDIO_ENCODER_OUTPUT) to compute features from.")
        return io.NodeOutput(feats)


class MatchLength(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "StyleLipSyncMatchLength", "Match Length",
            "Makes the video and the audio the same length: trim to the audio, trim to the video, loop "
            "or ping-pong the video, or pad the audio with silence. The audio keeps its sample rate and channels.",
            [
                io.Image.Input("images", tooltip="The video frames."),
                io.Audio.Input("audio", tooltip="The new speech (any rate, stereo or mono)."),
                fps_input(),
                io.Combo.Input("policy", options=list(LENGTH_POLICIES), default=LENGTH_POLICIES[0],
                               tooltip="trim_to_audio: as long as the audio (last frame held if the video is "
                               "shorter); trim_to_video: as long as the video; loop / ping_pong: repeat the video "
                               "over the audio; pad_silence: the longer of the two, audio padded."),
                video_info_input(),
                FaceTrackType.Input("track", optional=True, tooltip="The frames' track: comes out matching the "
                                    "frames out, so the video is tracked once, before its length changes."),
            ],
            [
                _out(io.Image, "images", "The frames, cut or extended."),
                _out(io.Audio, "audio", "The audio, cut or padded to exactly the frames' duration."),
                _out(io.Int, "frame_count", "Number of frames out."),
                _out(FaceTrackType, "track", "The track of the frames out (when a track is connected)."),
            ],
        )  # fmt: skip

    @classmethod
    def execute(cls, images: torch.Tensor, audio: Audio, fps: float, policy: str, video_info: VideoInfo | None = None,
                track: FaceTrack | None = None) -> io.NodeOutput:  # fmt: skip
        rate = resolve_fps(("fps", fps), ("video_info", video_info))
        frames = frames_of(images)
        if track is not None:
            check_lengths(frames, track)
        matched = core_audio.match_length(len(frames), mono_16k(audio), rate, policy)
        idx = np.asarray(matched.frame_indices)
        return io.NodeOutput(image_out(frames[idx]), audio_of_duration(audio, matched.num_frames / rate),
                             int(matched.num_frames), track_frames(track, idx) if track is not None else None)


class StyleReferenceNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "StyleLipSyncStyleReference", "Style Reference",
            "The person's speaking style: n frames of a clip's audio features (keys) and mouth "
            "motion (values), as the paper's audio-aware style reference. By default the input video with its "
            "own audio; or connect another clip of the person (reference frames + their audio), or someone "
            "else's for a style transfer.",
            [
                models_input(),
                io.Int.Input("max_frames", default=DEFAULT_REFERENCE_FRAMES, min=8, max=4096,
                             tooltip="Reference length n (the paper uses 256 frames)."),
                fps_input("reference_fps", "the reference frames"),
                FaceTrackType.Input("video_track", optional=True,
                                    tooltip="The input video's track (default reference)."),
                io.Audio.Input("video_audio", optional=True,
                               tooltip="The input video's own audio (what its lips were saying)."),
                io.Image.Input("reference_images", optional=True,
                               tooltip="Another clip's frames: used instead of the video."),
                io.Audio.Input("reference_audio", optional=True, tooltip="That clip's own audio."),
                video_info_input("reference_video_info"),
            ],
            [_out(StyleReferenceType, "style", "Reference audio features and mouth params "
                                               "(n frames).")],
        )  # fmt: skip

    @classmethod
    def execute(cls, models: LipSyncModelBundle, max_frames: int, reference_fps: float,
                video_track: FaceTrack | None = None,
                video_audio: Audio | None = None, reference_images: torch.Tensor | None = None,
                reference_audio: Audio | None = None,
                reference_video_info: VideoInfo | None = None) -> io.NodeOutput:  # fmt: skip
        from ..lipsync_core import stages
        from ..lipsync_core.face import track_faces

        if reference_images is not None:
            if reference_audio is None:
                raise LipSyncInputError("reference_audio: reference frames need their own audio; connect it.")
            rate = resolve_fps(("reference_fps", reference_fps), ("reference_video_info", reference_video_info))
            track = track_faces(frames_of(reference_images, "reference_images"), rate, crop_size=TRACK_CROP_SIZE,
                                input_name="reference_images")
            wave, source = mono_16k(reference_audio, "reference_audio"), "reference clip"
        elif video_track is not None and video_audio is not None:
            track, wave, source = video_track, mono_16k(video_audio, "video_audio"), "input video"
        else:
            raise LipSyncInputError(
                "style: connect video_track + video_audio (the input video), or reference_images + reference_audio."
            )
        analysis = FaceAnalysis.of(track, models.mouth) if track.usable.any() else None
        if analysis is None:
            raise LipSyncInputError(f"style: no face found in the {source}; give a clip where the face is visible.")
        return io.NodeOutput(stages.style_reference(analysis, wave, models.feature_spec, int(max_frames), source))


class PredictMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "StyleLipSyncPredictMotion", "Predict Lip Motion",
            "Stage 1: lip motion (13 mouth params per frame) from the audio features, in the style of "
            "the reference. Shows the mouth opening, the audio level and the attention over the reference on the "
            "node.",
            [
                models_input(),
                AudioFeaturesType.Input("features", tooltip="From StyleLipSync Audio Features."),
                style_strength_input(),
                io.Float.Input("mouth_scale", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="Scales how far the mouth opens (1 = as predicted)."),
                io.Boolean.Input("close_on_silence", default=False,
                                 tooltip="Close the mouth where the audio is silent."),
                StyleReferenceType.Input("style", optional=True, tooltip="Without it, the model's generic style."),
            ],
            [_out(LipMotionType, "motion", "(frames, 13) mouth params and the (frames, n) "
                                          "attention over the reference.")],
        )  # fmt: skip

    @classmethod
    def execute(cls, models: LipSyncModelBundle, features: AudioFeatures, style_strength: float, mouth_scale: float,
                close_on_silence: bool,
                style: StyleReference | None = None) -> io.NodeOutput:  # fmt: skip
        from ..lipsync_core import stages

        with comfy_attention_installed():
            motion = stages.predict_motion(models.ready_motion(), features, style, style_strength, mouth_scale,
                                           bool(close_on_silence))
        opening, envelope = motion_curves(models.mouth, motion, features)
        return io.NodeOutput(motion, ui=motion_view_payload(motion.fps, opening, envelope, motion.attention))


class PreviewMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "StyleLipSyncPreviewMotion", "Preview Motion",
            "Checks the predicted motion before rendering: the predicted lips (green) drawn over the "
            "frames with the tracked lips (red), and a picture of where each frame attends in the style reference.",
            [models_input(), io.Image.Input("images", tooltip="The frames the track and motion are of."),
             FaceTrackType.Input("track", tooltip="From StyleLipSync Track Faces (or Match Length)."),
             LipMotionType.Input("motion", tooltip="From StyleLipSync Predict Lip Motion.")],
            [_out(io.Image, "overlay", "The frames with the lips drawn on."),
                     _out(io.Image, "attention", "Rows: output frames (top down); columns: reference "
                                     "frames; bright = attended.")],
        )  # fmt: skip

    @classmethod
    def execute(cls, models: LipSyncModelBundle, images: torch.Tensor, track: FaceTrack,
                motion: LipMotion) -> io.NodeOutput:
        frames = frames_of(images)
        check_lengths(frames, track, motion)
        overlay = draw_mouths(frames, track, models.mouth, motion.params)
        return io.NodeOutput(image_out(overlay), image_out(attention_picture(motion.attention)[None]))


def _settings(sampler: str, steps: int, seed: int, chunk_size: int, color_match: float | None = None,
              reference_images: int | None = None) -> RenderSettings:
    d = RenderSettings()
    return RenderSettings(sampler=sampler, steps=int(steps), seed=int(seed), chunk_size=int(chunk_size),
                          color_match=d.color_match if color_match is None else float(color_match),
                          reference_images=d.reference_images if reference_images is None else int(reference_images))


def _render(cls: type[io.ComfyNode], bundle: LipSyncModelBundle, analysis: FaceAnalysis, motion: LipMotion,
            source: ArrayFrames, frame_indices: np.ndarray | None, settings: RenderSettings, vae: ComfyVAE | None,
            cache: RenderCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """stages.render under ComfyUI's progress bar, Cancel (between chunks and denoising steps) and model
    management (which may move the models between chunks); ``cache``: the job's seed-independent render work
    kept from its last run (lipsync_core.render.cache)."""
    from ..lipsync_core import stages

    codec = codec_for(bundle, vae)
    total = len(analysis) if frame_indices is None else len(frame_indices)
    bar = Progress(total, _node_id(cls))

    def before_chunk() -> None:
        check_interrupted()
        bundle.ready()

    with comfy_attention_installed():
        return stages.concat(stages.render(
            bundle.ready(), analysis, motion, source, frame_indices, settings, codec,
            progress=lambda done, _total: bar.set(done), before_chunk=before_chunk,
            step_callback=lambda _step: check_interrupted(), cache=cache, graph=True,  # models stay loaded
        ))  # fmt: skip


class Render(io.ComfyNode):
    EARLIER_INPUTS = frozenset({"style"})  # 0.1 took a style reference here and never used it
    @classmethod
    def define_schema(cls) -> io.Schema:
        d = RenderSettings()
        return _schema(
            "StyleLipSyncRender", "Render",
            "Stage 2: repaints the lower half of the face in every frame to follow the lip motion "
            "(latent diffusion with the same initial noise for every frame), pasted back with a feathered mask. "
            "Frames without a face pass through. Renders in chunks: progress per chunk, Cancel stops at once.",
            [
                models_input(),
                io.Image.Input("images", tooltip="The video frames (same frames the track was made from)."),
                FaceTrackType.Input("track", tooltip="From StyleLipSync Track Faces (or Match Length)."),
                LipMotionType.Input("motion", tooltip="From StyleLipSync Predict Lip Motion."),
                *render_inputs(),
                io.Float.Input("color_match", default=d.color_match, min=0.0, max=1.0, step=0.05,
                               tooltip="How much the repainted mouth's colours are matched to the frame."),
                io.Int.Input("reference_images", default=d.reference_images, min=1, max=16,
                             tooltip="Frames of the video shown to the renderer as appearance reference."),
                vae_input(),
            ],
            [_out(io.Image, "images", "The lip-synced frames (same count as the input)."),
                     _out(io.Mask, "mask", "Where each frame was repainted (0..1).")],
            hidden=[io.Hidden.unique_id],
        )  # fmt: skip

    @classmethod
    def execute(cls, models: LipSyncModelBundle, images: torch.Tensor, track: FaceTrack, motion: LipMotion,
                sampler: str, steps: int, seed: int,
                chunk_size: int, color_match: float, reference_images: int, vae: ComfyVAE | None = None,
                **earlier: Any) -> io.NodeOutput:  # fmt: skip
        """``earlier``: what workflows of 0.1 still link to inputs that no longer exist (EARLIER_INPUTS): ignored."""
        if set(earlier) - cls.EARLIER_INPUTS:
            raise TypeError(f"StyleLipSyncRender: unexpected inputs {sorted(set(earlier) - cls.EARLIER_INPUTS)}")
        frames = frames_of(images)
        check_lengths(frames, track, motion)
        track = track_at_crop_size(track, models.renderer_config.crop_size)
        out, masks = _render(cls, models, FaceAnalysis.of(track, models.mouth), motion, ArrayFrames(frames, track.fps),
                             None, _settings(sampler, steps, seed, chunk_size, color_match, reference_images), vae)
        return io.NodeOutput(image_out(out), torch.from_numpy(masks))


class LipSync(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return _schema(
            "StyleLipSyncLipSync", "Lip Sync (all in one)",
            "The whole job in one node: a VIDEO (or frames + fps) and new audio -> the lip-synced "
            "VIDEO (for Save Video), its frames and the audio cut to match. The style reference is the video "
            "itself with its own audio unless a style clip is connected. A second run that changes only the "
            "seed, sampler or steps re-renders only (the crops' latents and mouth maps are kept too: it only "
            "denoises, decodes and pastes back).",
            [
                models_input(),
                *footage_inputs("The video frames (or connect a VIDEO instead).", "The new speech."),
                io.Combo.Input("length_policy", options=list(LENGTH_POLICIES), default=LENGTH_POLICIES[0],
                               tooltip="When video and audio differ in length (see Match Length)."),
                style_strength_input(),
                *render_inputs(),
                video_info_input(),
                io.Audio.Input("video_audio", optional=True, tooltip="The video's own audio: makes the video its "
                               "own style reference (recommended; a connected VIDEO brings its own)."),
                io.Image.Input("style_images", optional=True, tooltip="A style clip's frames (another clip of the "
                               "person, or someone else's for style transfer)."),
                io.Audio.Input("style_audio", optional=True, tooltip="The style clip's own audio."),
                io.Float.Input("style_fps", default=0.0, min=0.0, max=1000.0, step=0.001, optional=True,
                               tooltip="The style clip's frame rate; 0 = the video's."),
                vae_input(),
                *no_face_inputs(optional=True),  # optional (last widgets): workflows saved before them still load
                io.Video.Input("video", optional=True, tooltip="A core VIDEO: its frames, fps and sound (the style "
                               "reference) instead of images + fps + video_audio."),
            ],
            [
                _out(io.Image, "images", "The lip-synced frames."),
                _out(io.Audio, "audio", "The new audio, exactly as long as the frames (its own rate)."),
                _out(io.Mask, "mask", "Where each frame was repainted."),
                _out(io.Float, "fps", "The frames' rate, for Create Video."),
                _out(io.Video, "video", "The lip-synced frames with the new audio: connect Save Video."),
            ],
            hidden=[io.Hidden.unique_id],
        )  # fmt: skip

    @classmethod
    def execute(cls, models: LipSyncModelBundle, fps: float, length_policy: str, style_strength: float, sampler: str,
                steps: int,
                seed: int, chunk_size: int, images: torch.Tensor | None = None, audio: Audio | None = None,
                video_info: VideoInfo | None = None, video_audio: Audio | None = None,
                style_images: torch.Tensor | None = None,
                style_audio: Audio | None = None, style_fps: float = 0.0, vae: ComfyVAE | None = None,
                no_face: str = GAP_POLICIES[0],
                max_gap_seconds: float = DEFAULT_MAX_GAP_SECONDS,
                video: VideoInput | None = None) -> io.NodeOutput:  # fmt: skip
        if audio is None:
            raise LipSyncInputError("audio: not connected; connect the new speech (AUDIO).")
        bar = Progress(1, _node_id(cls))

        from ..lipsync_core import pipeline

        def prepare() -> tuple[ArrayFrames, pipeline.Prepared, RenderCache]:
            frames, rate, own = footage(images, fps, video_info, video, video_audio, "the video's frames")
            source = ArrayFrames(frames, rate, "images")
            wave = mono_16k(audio)  # checked (and cleaned) before any model work
            style_video = style_wave = None
            if style_images is not None:
                style_video = ArrayFrames(frames_of(style_images, "style_images"), style_fps or source.fps,
                                          "style_images")
                if style_audio is None:
                    raise LipSyncInputError("style_audio: not connected; a style clip needs its own sound: connect "
                                            "the style clip's AUDIO, or disconnect style_images to use the input "
                                            "video.")
                style_wave = mono_16k(style_audio, "style_audio")
            elif own is not None:
                style_wave = mono_16k(own, "video_audio")
            options = pipeline.JobOptions(length_policy=length_policy, style_strength=float(style_strength),
                                          tracker_options=tracker_options(no_face, max_gap_seconds, source.fps,
                                                                          default_devices()[0]))
            with comfy_attention_installed():
                job = pipeline.prepare(source, wave, models.ready(), style_video, style_wave, options,
                                       progress=lambda _stage, done, total: bar.set(done, total),
                                       before_chunk=check_interrupted)  # fmt: skip
            return source, job, RenderCache()  # the render's seed-independent work, kept with the job

        # everything but the render widgets and the VAE decides the work before rendering
        source, job, render_cache = PREPARED.get({
            "models": models, "images": images, "video": video, "audio": audio, "fps": fps, "video_info": video_info,
            "video_audio": video_audio, "style_images": style_images, "style_audio": style_audio,
            "style_fps": style_fps, "length_policy": length_policy, "style_strength": float(style_strength),
            "no_face": no_face, "max_gap_seconds": float(max_gap_seconds)}, prepare)  # fmt: skip
        out, masks = _render(cls, models, job.analysis, job.motion, source, job.matched.frame_indices,
                             _settings(sampler, steps, seed, chunk_size), vae, render_cache)
        frames_out = image_out(out)
        new_audio = audio_of_duration(audio, len(out) / source.fps)
        return io.NodeOutput(frames_out, new_audio, torch.from_numpy(masks.astype(np.float32)), float(source.fps),
                             video_out(frames_out, new_audio, source.fps))


class Personalize(io.ComfyNode):
    """Fine-tunes the connected models on one person's footage (lipsync_core.train.personalize)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        from ..lipsync_core.train.personalize import DEFAULT_STEPS, MIN_FOOTAGE_SECONDS

        return _schema(
            "StyleLipSyncPersonalize", "Personalize",
            "Fine-tunes the models on the person you are dubbing: footage of them speaking (frames + their own "
            f"sound, at least {MIN_FOOTAGE_SECONDS:g} s; a minute or more helps) -> models that render this face "
            "and move these lips as this person does. Saved to models/stylelipsync/<name>/ (Load Models lists it "
            "after a refresh); a second run with the same inputs loads the saved folder instead of training.",
            [
                models_input(),
                *footage_inputs("The person's footage: frames (or connect a VIDEO).",
                                "The footage's own sound: what the person says in it."),
                io.String.Input("name", default="personal", tooltip="Folder name under models/stylelipsync."),
                io.Int.Input("steps", default=DEFAULT_STEPS, min=1, max=1_000_000,
                             tooltip="Renderer training steps (stage 1 and the VAE decoder take fixed shares). "
                             f"{DEFAULT_STEPS} take about 12 minutes on a 2-core CPU (10 from the command line, "
                             "which trains stage 1 in a second process)."),
                io.Float.Input("minutes", default=0.0, min=0.0, max=10_000.0, step=0.5,
                               tooltip="Wall-clock budget (0 = none): training stops then, the best checkpoints kept."),
                # not named "seed": the frontend would add "randomize after run", and every run would retrain
                io.Int.Input("training_seed", default=0, min=0, max=2**31 - 1, control_after_generate=False,
                             tooltip="Seed of the training samples (fixed: another value trains again)."),
                io.Boolean.Input("overwrite", default=False,
                                 tooltip="Replace a folder of that name made from other inputs (never silently)."),
                video_info_input(),
                io.Video.Input("video", optional=True,
                               tooltip="A core VIDEO with its sound, instead of images + audio + fps."),
            ],
            [_out(ModelsType, "models", "The personalized models, for Render and Lip Sync."),
             _out(io.String, "report", "Where they were saved, the steps and the held-out losses.")],
            hidden=[io.Hidden.unique_id],
        )  # fmt: skip

    @classmethod
    def folder(cls, name: str) -> Path:
        clean = name.strip()
        if not clean or clean in (".", "..") or any(c in clean for c in "/\\:"):
            raise LipSyncInputError(f"name: '{name}' is not a folder name; use letters, digits, '-' or '_'.")
        return models_save_folder() / clean

    @classmethod
    def fingerprint_inputs(cls, name: str, **_inputs: Any) -> str:
        """The host re-runs the node when its inputs change; a saved folder deleted or replaced counts too."""
        try:
            return str(file_key(cls.folder(name) / RECORD_FILE))
        except Exception:  # noqa: BLE001 - no folder yet: the run makes it
            return "absent"

    @classmethod
    def execute(cls, models: LipSyncModelBundle, fps: float, name: str, steps: int, minutes: float,
                training_seed: int, overwrite: bool, images: torch.Tensor | None = None, audio: Audio | None = None,
                video_info: VideoInfo | None = None, video: VideoInput | None = None) -> io.NodeOutput:
        import hashlib
        import importlib.util
        import json

        if importlib.util.find_spec("accelerate") is None:  # the training loops' package (requirements.txt)
            raise LipSyncInputError("Personalize: the accelerate package is missing; install the pack's requirements "
                                    "into ComfyUI's Python (pip install -r requirements.txt) and restart ComfyUI.")
        from ..lipsync_core.train.personalize import (
            Callbacks,
            Footage,
            PersonalizeOptions,
            personalize,
            stage_configs,
        )

        pictures, rate, sound = footage(images, fps, video_info, video, audio, "the person's footage")
        if sound is None:
            raise LipSyncInputError("audio: not connected; connect the footage's own sound (AUDIO): personalize "
                                    "learns how this person's lips follow their voice.")
        wave = mono_16k(sound)
        out = cls.folder(name)
        options = PersonalizeOptions(steps=int(steps), minutes=float(minutes) or None, seed=int(training_seed), jobs=1,
                                     overwrite=bool(overwrite), device=str(default_devices()[0]))
        digest = hashlib.sha256()
        for part in (pictures, wave):
            digest.update(np.ascontiguousarray(part).tobytes())
        digest.update(json.dumps([rate, models.files, steps, options.minutes, training_seed, bundle_fingerprint(
            *(models.files.get(k, NO_VAE) for k in ("motion", "renderer", "mouth_model", "vae")))]).encode())
        inputs = digest.hexdigest()
        record_path = out / RECORD_FILE
        started = out / WORK_DIR / INPUTS_FILE
        if record_path.is_file() and json.loads(record_path.read_text()).get("inputs") == inputs:
            record = json.loads(record_path.read_text())  # made from these very inputs: not trained again
        else:
            resume = started.is_file() and started.read_text() == inputs  # a cancelled run of these inputs
            if out.is_dir() and any(out.iterdir()) and not (resume or overwrite):
                raise LipSyncInputError(f"name: {out} holds models or a run made from other inputs; set overwrite "
                                        "to replace them, or choose another name.")
            options = replace(options, resume=resume, overwrite=bool(overwrite) and not resume)
            total = sum(c.steps for c in stage_configs(options).values())
            bar = Progress(total, _node_id(cls))
            done: dict[str, int] = {}

            def progress(stage: str, step: int, _total: int, _val: float | None) -> None:
                done[stage] = step
                bar.set(sum(done.values()))  # also honours Cancel between steps

            make_room(4 * sum(h.size_bytes() for h in (models.motion, models.renderer, models.vae) if h)
                      + (1 << 30), default_devices()[0])
            try:  # ComfyUI runs nodes under inference mode: training needs autograd back
                with torch.inference_mode(False), torch.enable_grad():
                    record = personalize([Footage("images", frames=pictures, fps=rate, wave=wave)], out,
                                         models.files, options,
                                         Callbacks(progress=progress, before_step=check_interrupted),
                                         progress=False, inputs=inputs)
            finally:
                release_cache()
        files = {kind: str(out / MODEL_FILES[kind]) for kind in ("motion", "renderer", "mouth_model", "vae")}
        bundle = load_bundle(files["motion"], files["renderer"], files["mouth_model"], files["vae"])
        report = personal_report(out, record)
        return io.NodeOutput(bundle, report, ui={TEXT_KEY: [report]})


def personal_report(out: Path, record: dict) -> str:
    """What a Personalize run made: the folder, the steps and the held-out losses of each stage."""
    lines = [f"Personalized models in {out} ({record['frames']} frames, {record['validation_frames']} held out)."]
    for stage, v in record["validation"].items():
        lines.append(f"{stage}: {record['steps'][stage]} steps, held-out loss {v['val_loss_first']:.4g} -> "
                     f"{v['val_loss_best']:.4g} (best at step {v['best_step']})")
    return "\n".join(lines)


NODES: list[type[io.ComfyNode]] = [LoadModels, DemoMedia, TrackFaces, AudioFeaturesNode, MatchLength,
StyleReferenceNode,
                                   PredictMotion, PreviewMotion, Render, LipSync, ModelInfo, Personalize]
