"""StyleLipSyncTrackFaces: IMAGE frames -> STYLELIPSYNC_FACE_TRACK (landmarks, crops, gaps flagged)."""

from __future__ import annotations

from typing import Any

from . import graph_types as gt
from ._core import core_module
from .comfy_host import CATEGORY
from .fps import resolve_fps
from .plumbing import FACE_CHOICES, FPS_WIDGET, MODELS_INPUT, NO_FACE_WIDGETS, VIDEO_INFO_INPUT, tracker_options

TRACK_CROP_SIZE = 256  # the track's own crop; the render node rescales it to the renderer's crop size


class StyleLipSyncTrackFaces:
    DESCRIPTION = (
        "Finds and follows one face through the frames (MediaPipe Face Mesh, or insightface when its models are "
        "installed). Frames without a face pass through untouched, except short tracker dropouts within one "
        "shot, which are interpolated; the frame count never changes."
    )
    CATEGORY = CATEGORY
    FUNCTION = "track"
    RETURN_TYPES = (gt.FACE_TRACK, "STRING")
    RETURN_NAMES = ("track", "notes")
    OUTPUT_TOOLTIPS = ("Per-frame landmarks, crop transforms and head pose.", "What happened to face-less frames.")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The video frames."}),
                "fps": FPS_WIDGET,
                "backend": (["torch", "mediapipe", "insightface"], {"default": "torch",
                            "tooltip": "torch: MediaPipe's face mesh ported to torch (shipped, GPU); mediapipe: the "
                            "mediapipe package if installed; insightface needs models/insightface/models/buffalo_l."}),
                "face_choice": (list(FACE_CHOICES), {"default": "largest",
                                "tooltip": "Which face to follow when there are several ('identity' needs "
                                "backend insightface and a reference_face)."}),
                **NO_FACE_WIDGETS,
            },
            "optional": {
                "models": (MODELS_INPUT[0], {"tooltip": "Connect to track at the renderer's crop size (exactly as the "
                           "all-in-one node does); without it the render node rescales a 256-px track."}),
                "video_info": VIDEO_INFO_INPUT,
                "reference_face": ("IMAGE", {"tooltip": "A photo of the person to follow (face_choice identity)."}),
            },
        }  # fmt: skip

    def track(
        self, images: Any, fps: float, backend: str, face_choice: str, no_face: str, max_gap_seconds: float,
        models: Any = None, video_info: Any = None, reference_face: Any = None,
    ) -> tuple[Any, str]:  # fmt: skip
        from .plumbing import frames_of

        rate = resolve_fps(("fps", fps), ("video_info", video_info))
        crop = int(models.renderer_config.crop_size) if models is not None else TRACK_CROP_SIZE
        options: dict[str, Any] = {}
        if reference_face is not None:
            options["reference_image"] = frames_of(reference_face, "reference_face")
        track = core_module("face").track_faces(
            frames_of(images), rate, backend=backend, crop_size=crop, face_choice=face_choice,
            input_name="images", **tracker_options(no_face, max_gap_seconds, rate), **options,
        )  # fmt: skip
        found = int(track.usable.sum())
        notes = "\n".join([f"{found} of {len(track)} frames have a face.", *track.notes])
        return track, notes


NODE_CLASS_MAPPINGS = {"StyleLipSyncTrackFaces": StyleLipSyncTrackFaces}
NODE_DISPLAY_NAME_MAPPINGS = {"StyleLipSyncTrackFaces": "StyleLipSync Track Faces"}
