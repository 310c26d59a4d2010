"""Face landmark backends: the torch port of MediaPipe's face mesh (default), the mediapipe package
(legacy face mesh or Tasks) and insightface + the face mesh.

Every backend turns RGB uint8 frames into, per frame, a list of :class:`FaceCandidate`
(478 MediaPipe landmarks in image pixels, x and z in the same pixel scale). Heavy imports
are lazy; a missing package or model file is a one-line LipSyncInputError naming the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..types import NUM_LANDMARKS, LipSyncInputError

DEFAULT_INSIGHTFACE_ROOT = os.environ.get("STYLELIPSYNC_INSIGHTFACE_ROOT", "models/insightface")
DEFAULT_FACE_LANDMARKER = os.environ.get("STYLELIPSYNC_FACE_LANDMARKER", "models/mediapipe/face_landmarker.task")


@dataclass
class FaceCandidate:
    """One face found in one frame."""

    landmarks: np.ndarray  # (478, 3) image pixels
    box: np.ndarray  # (4,) x0, y0, x1, y1
    embedding: np.ndarray | None = None  # identity embedding (insightface), unit norm
    score: float = 1.0

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))

    @property
    def centre(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])


def _candidate(points_norm: np.ndarray, width: int, height: int, x0: float = 0.0, y0: float = 0.0) -> FaceCandidate:
    """Normalised MediaPipe landmarks of an image (or a sub-image at x0, y0) -> pixel candidate."""
    lm = np.empty((len(points_norm), 3), dtype=np.float32)
    lm[:, 0] = points_norm[:, 0] * width - 0.5 + x0  # pixel centres at integer coordinates
    lm[:, 1] = points_norm[:, 1] * height - 0.5 + y0
    lm[:, 2] = points_norm[:, 2] * width
    lo, hi = lm[:, :2].min(axis=0), lm[:, :2].max(axis=0)
    return FaceCandidate(landmarks=lm, box=np.concatenate([lo, hi]))


def _mesh_array(landmark_list) -> np.ndarray:
    return np.array([(p.x, p.y, p.z) for p in landmark_list], dtype=np.float32)


def has_legacy_face_mesh() -> bool:
    """True when MediaPipe's legacy face mesh (bundled model) is importable."""
    try:
        import mediapipe as mp

        return hasattr(mp, "solutions") and hasattr(mp.solutions, "face_mesh")
    except ImportError:
        return False


def default_device() -> torch.device:
    """Where the torch face mesh runs unless told: the first CUDA device when there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


class TorchMeshBackend:
    """MediaPipe's legacy face mesh (refined, 478 points) ported to torch: no mediapipe package needed.

    Same pipeline as :class:`MediaPipeBackend` in legacy mode (detection, tracking from the previous
    frame's landmarks, full-range detector for faces the short-range one misses), batched over frames,
    on any device; ``dtype`` float16 / bfloat16 halves the networks on a GPU.
    """

    name = "torch"

    def __init__(
        self,
        fps: float = 25.0,
        max_faces: int = 4,
        static: bool = False,
        min_confidence: float = 0.5,
        small_face_fallback: bool = True,
        full_range: bool = False,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        from .torch_mesh import TorchFaceMesh

        self.fps = float(fps)
        self._mesh = TorchFaceMesh(
            max_faces=max_faces,
            static=static,
            min_detection=min_confidence,
            min_tracking=min_confidence,
            full_range="always" if full_range else ("fallback" if small_face_fallback else "never"),
            device=default_device() if device is None else device,
            dtype=dtype,
        )

    def process_batch(self, frames: np.ndarray) -> list[list[FaceCandidate]]:
        """RGB uint8 frames (T, H, W, 3) -> per frame, the faces in it."""
        h, w = frames.shape[1:3]
        return [[_candidate(f, w, h) for f in faces] for faces in self._mesh.process_batch(frames)]

    def process(self, frame: np.ndarray) -> list[FaceCandidate]:
        """One RGB uint8 frame (H, W, 3) -> the faces in it."""
        return self.process_batch(frame[None])[0]

    def close(self) -> None:
        self._mesh.reset()


class MediaPipeBackend:
    """MediaPipe Face Mesh in video (tracking) mode: legacy bundled model, else Tasks + .task file."""

    name = "mediapipe"

    def __init__(
        self,
        fps: float,
        max_faces: int = 4,
        static: bool = False,
        min_confidence: float = 0.5,
        face_landmarker_path: str | os.PathLike | None = None,
        small_face_fallback: bool = True,
        full_range: bool = False,
    ):
        try:
            import mediapipe as mp
        except ImportError as exc:
            raise LipSyncInputError(
                "face backend 'mediapipe': the mediapipe package is not installed; pip install mediapipe."
            ) from exc
        self.fps = float(fps)
        self._frame = 0
        self._last_ms = -1
        self._max_faces = max_faces
        self._min_confidence = min_confidence
        self._fallback = small_face_fallback
        self._full_range = full_range
        self._detector = None
        self._box_mesh: MediaPipeBackend | None = None
        if has_legacy_face_mesh() and face_landmarker_path is None:
            self.kind = "legacy"
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static,
                max_num_faces=max_faces,
                refine_landmarks=True,
                min_detection_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
            )
            return
        path = Path(face_landmarker_path or DEFAULT_FACE_LANDMARKER)
        if not path.is_file():
            raise LipSyncInputError(
                f"face backend 'mediapipe': this mediapipe has no bundled face mesh and no face_landmarker.task at "
                f"{path}; download face_landmarker.task from MediaPipe and set face_landmarker_path."
            )
        vision = mp.tasks.vision
        self.kind = "tasks"
        self._mp = mp
        options = vision.FaceLandmarkerOptions(
            base_options=mp.tasks.BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE if static else vision.RunningMode.VIDEO,
            num_faces=max_faces,
            min_face_detection_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )
        self._static = static
        self._mesh = vision.FaceLandmarker.create_from_options(options)

    def process(self, frame: np.ndarray) -> list[FaceCandidate]:
        """One RGB uint8 frame (H, W, 3) -> the faces in it."""
        h, w = frame.shape[:2]
        frame = np.ascontiguousarray(frame)
        if self.kind == "legacy":
            result = self._mesh.process(frame)
            faces = result.multi_face_landmarks or []
            out = [_candidate(_mesh_array(f.landmark), w, h) for f in faces]
        else:
            image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=frame)
            if self._static:
                result = self._mesh.detect(image)
            else:
                ms = max(int(round(self._frame * 1000.0 / self.fps)), self._last_ms + 1)
                self._last_ms = ms
                result = self._mesh.detect_for_video(image, ms)
            out = [_candidate(_mesh_array(f), w, h) for f in result.face_landmarks]
        self._frame += 1
        out = [c for c in out if len(c.landmarks) == NUM_LANDMARKS]
        if self.kind == "legacy" and ((not out and self._fallback) or self._full_range):
            out = out + [c for c in self._small_faces(frame) if not any(_overlaps(c.box, o.box) for o in out)]
        return out

    def _small_faces(self, frame: np.ndarray) -> list[FaceCandidate]:
        """Faces the mesh's short-range detector misses (small or far): full-range detector + mesh in the box."""
        import mediapipe as mp

        if self._detector is None:
            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=self._min_confidence
            )
            self._box_mesh = MediaPipeBackend(self.fps, max_faces=1, static=True, small_face_fallback=False)
        h, w = frame.shape[:2]
        found = []
        for det in (self._detector.process(frame).detections or [])[: self._max_faces]:
            b = det.location_data.relative_bounding_box
            box = np.array([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h])
            cand = mesh_in_box(self._box_mesh, frame, box)
            if cand is not None:
                found.append(cand)
        return found

    def close(self) -> None:
        self._mesh.close()
        if self._detector is not None:
            self._detector.close()
            self._box_mesh.close()


class InsightFaceBackend:
    """insightface (buffalo_l) finds faces and their identity; the (torch) face mesh meshes the chosen box.

    Needs ``pip install insightface onnxruntime`` and the model pack at
    ``<root>/models/buffalo_l`` (ComfyUI: models/insightface/models/buffalo_l).
    """

    name = "insightface"

    def __init__(self, fps: float, root: str | os.PathLike | None = None, det_size: int = 640, use_gpu: bool = False):
        root = Path(root or DEFAULT_INSIGHTFACE_ROOT)
        try:
            from insightface.app import FaceAnalysis
        except ImportError as exc:
            raise LipSyncInputError(
                "face backend 'insightface': the insightface package is not installed; "
                "pip install insightface onnxruntime, or use backend='mediapipe'."
            ) from exc
        pack = root / "models" / "buffalo_l"
        if not pack.is_dir() or not any(pack.glob("*.onnx")):
            raise LipSyncInputError(
                f"face backend 'insightface': model pack buffalo_l not found at {pack}; "
                "put the buffalo_l folder (its .onnx files) there, or use backend='mediapipe'."
            )
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_gpu else ["CPUExecutionProvider"]
        self._app = FaceAnalysis(
            name="buffalo_l", root=str(root), allowed_modules=["detection", "recognition"], providers=providers
        )
        self._app.prepare(ctx_id=0 if use_gpu else -1, det_size=(det_size, det_size))
        self._mesh = TorchMeshBackend(fps, max_faces=1, static=True, small_face_fallback=False)

    def faces(self, frame: np.ndarray) -> list[FaceCandidate]:
        """Detected faces with boxes and identity embeddings (no mesh yet)."""
        bgr = np.ascontiguousarray(frame[..., ::-1])
        out = []
        for f in self._app.get(bgr):
            emb = getattr(f, "normed_embedding", None)
            out.append(
                FaceCandidate(
                    landmarks=np.zeros((0, 3), np.float32),
                    box=np.asarray(f.bbox, np.float32),
                    embedding=None if emb is None else np.asarray(emb, np.float32),
                    score=float(getattr(f, "det_score", 1.0)),
                )
            )
        return out

    def mesh_in_box(self, frame: np.ndarray, box: np.ndarray) -> FaceCandidate | None:
        """Face-mesh landmarks of the face inside ``box`` (x0, y0, x1, y1), in frame pixels."""
        return mesh_in_box(self._mesh, frame, box)

    def process(self, frame: np.ndarray) -> list[FaceCandidate]:
        return self.faces(frame)

    def close(self) -> None:
        self._mesh.close()


def _overlaps(a: np.ndarray, b: np.ndarray, min_iou: float = 0.2) -> bool:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter > min_iou * max(union, 1e-9)


def mesh_in_box(
    mesh: MediaPipeBackend | TorchMeshBackend, frame: np.ndarray, box: np.ndarray, expand: float = 1.8
) -> FaceCandidate | None:
    """Run a (static) face mesh on a square crop around ``box``; landmarks back in frame pixels."""
    import cv2

    h, w = frame.shape[:2]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = expand * max(box[2] - box[0], box[3] - box[1]) / 2
    x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
    x1, y1 = int(min(cx + half, w)), int(min(cy + half, h))
    if x1 - x0 < 16 or y1 - y0 < 16:
        return None
    sub = frame[y0:y1, x0:x1]
    side = 384
    k = side / max(sub.shape[:2])
    resized = cv2.resize(
        sub,
        (max(int(round(sub.shape[1] * k)), 1), max(int(round(sub.shape[0] * k)), 1)),
        interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
    )
    found = mesh.process(resized)
    if not found:
        return None
    c = found[0]
    lm = c.landmarks.copy()
    sx, sy = sub.shape[1] / resized.shape[1], sub.shape[0] / resized.shape[0]
    lm[:, 0] = (lm[:, 0] + 0.5) * sx - 0.5 + x0
    lm[:, 1] = (lm[:, 1] + 0.5) * sy - 0.5 + y0
    lm[:, 2] *= sx
    lo, hi = lm[:, :2].min(axis=0), lm[:, :2].max(axis=0)
    return FaceCandidate(landmarks=lm, box=np.concatenate([lo, hi]))
