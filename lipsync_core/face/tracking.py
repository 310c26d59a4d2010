"""Face tracking: frames -> :class:`FaceTrack` (one face followed through a video).

- Streaming: :class:`FaceTracker` takes batches of frames (``feed``) and keeps only the
  landmarks, so a long video never has to sit in memory; ``finish`` builds the track.
- Which face: ``largest``, ``leftmost``, ``rightmost``, ``center`` or ``identity`` (insightface,
  closest to a reference face image) is chosen when the track (re)starts; after that the
  tracker follows the face nearest to where the chosen face was.
- Gaps: a run of frames without the face, up to ``max_gap_frames`` long, is interpolated
  (``gap_policy="interpolate"``; a gap touching the start or end holds the nearest face) only
  when it is a tracker dropout: the frames still show what their neighbours show, within one
  shot (:mod:`.gaps`). Black frames, a cut, or a hand in front of the face are never filled in.
  Those, longer runs, and every run with ``gap_policy="passthrough"`` are flagged not usable
  and later passed through untouched. Frame count in == frame count out, always.
- Crop transforms are fitted on rigid points and smoothed with a zero-phase One-Euro filter.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import torch

from ..types import (
    DEFAULT_MAX_GAP_SECONDS,
    FACE_BACKENDS,
    FACE_CHOICES,
    GAP_POLICIES,
    NUM_LANDMARKS,
    FaceTrack,
    LipSyncInputError,
)
from .align import check_frames, crop_transforms_from_landmarks, similarity_from_params, similarity_params
from .backends import FaceCandidate, InsightFaceBackend, MediaPipeBackend, TorchMeshBackend, has_legacy_face_mesh
from .gaps import ContentLog
from .smoothing import OneEuroConfig, one_euro_zero_phase

FaceChoice = Literal["largest", "leftmost", "rightmost", "center", "identity"]
GapPolicy = Literal["interpolate", "passthrough"]
DEFAULT_FACE_BACKEND = FACE_BACKENDS[0]
__all__ = ["DEFAULT_FACE_BACKEND", "FACE_BACKENDS", "FACE_CHOICES", "GAP_POLICIES", "FaceTracker", "track_faces"]
DEFAULT_SMOOTHING = OneEuroConfig()
# A frame-to-frame change of the crop larger than these is a cut (in face sizes, log scale, radians).
CUT_MOVE = 0.25
CUT_LOG_SCALE = 0.15
CUT_ANGLE = 0.15


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class FaceTracker:
    """Streaming face tracker: ``feed(frames)`` any number of times, then ``finish()``.

    fps: the video's frame rate (used by the tracker's timestamps and the smoothing).
    backend: one of FACE_BACKENDS; device and dtype place the torch face mesh (default: CUDA if present).
    max_gap_frames: longest run of face-less frames that may be interpolated (default: 0.5 s of video).
    smoothing: One-Euro settings for the crop transform, or None for raw per-frame fits.
    """

    def __init__(
        self,
        fps: float,
        backend: str = DEFAULT_FACE_BACKEND,
        crop_size: int = 256,
        face_choice: FaceChoice = "largest",
        max_gap_frames: int | None = None,
        gap_policy: GapPolicy = "interpolate",
        smoothing: OneEuroConfig | None = DEFAULT_SMOOTHING,
        max_faces: int = 4,
        reference_image=None,
        identity_threshold: float = 0.3,
        insightface_root: str | os.PathLike | None = None,
        face_landmarker_path: str | os.PathLike | None = None,
        input_name: str = "frames",
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        if not fps or fps <= 0 or not np.isfinite(fps):
            raise LipSyncInputError(f"fps: got {fps!r}; give the video's frame rate (e.g. 25 or 29.97).")
        if face_choice not in FACE_CHOICES:
            raise LipSyncInputError(
                f"face_choice: {face_choice!r} is unknown; choose one of {', '.join(FACE_CHOICES)}."
            )
        if gap_policy not in GAP_POLICIES:
            raise LipSyncInputError(f"gap_policy: {gap_policy!r} is unknown; choose one of {', '.join(GAP_POLICIES)}.")
        if crop_size < 32:
            raise LipSyncInputError(f"crop_size: {crop_size} is too small; use 256 or 512.")
        self.fps = float(fps)
        self.crop_size = int(crop_size)
        self.face_choice = face_choice
        if max_gap_frames is None:
            max_gap_frames = round(DEFAULT_MAX_GAP_SECONDS * self.fps)
        if max_gap_frames < 0:
            raise LipSyncInputError(f"max_gap_frames: got {max_gap_frames}; use 0 (never fill in) or more.")
        self.max_gap_frames = int(max_gap_frames)
        self.gap_policy = gap_policy
        self.smoothing = smoothing
        self.identity_threshold = identity_threshold
        self.input_name = input_name
        self.backend_name = backend
        self._notes: list[str] = []
        if backend not in FACE_BACKENDS:
            raise LipSyncInputError(f"backend: {backend!r} is unknown; choose one of {', '.join(FACE_BACKENDS)}.")
        if backend != "insightface" and face_choice == "identity":
            raise LipSyncInputError(
                "face_choice: 'identity' needs backend='insightface' (with a reference face image)."
            )
        # Choosing by position must see small faces too: add the full-range detector on every frame.
        full_range = face_choice in ("leftmost", "rightmost", "center")
        if backend == "mediapipe" and face_landmarker_path is None and not has_legacy_face_mesh():
            # Workflows saved with backend 'mediapipe' keep working without the package: same model, in torch.
            self._notes.append("backend 'mediapipe': the mediapipe package is not installed; used its face mesh "
                               "ported to torch (backend 'torch').")
            backend = self.backend_name = "torch"
        if backend == "torch":
            self._backend = TorchMeshBackend(
                self.fps, max_faces=max_faces, full_range=full_range, device=device, dtype=dtype
            )
        elif backend == "mediapipe":
            self._backend = MediaPipeBackend(
                self.fps, max_faces=max_faces, face_landmarker_path=face_landmarker_path, full_range=full_range
            )
        else:
            self._backend = InsightFaceBackend(self.fps, root=insightface_root)
        self._reference = None
        if face_choice == "identity":
            if reference_image is None:
                raise LipSyncInputError("reference_image: face_choice='identity' needs a reference face image.")
            self._reference = self._reference_embedding(reference_image)
        self._landmarks: list[np.ndarray | None] = []
        self._content = ContentLog(self.max_gap_frames if gap_policy == "interpolate" else 0)
        self._frame_size: tuple[int, int] | None = None
        self._last_centre: np.ndarray | None = None
        self._last_size = 0.0
        self._last_seen = -(10**9)

    # ------------------------------------------------------------------ feeding

    def _reference_embedding(self, image) -> np.ndarray:
        img = check_frames(image, "reference_image")[0]
        faces = [f for f in self._backend.faces(_to_uint8(img)) if f.embedding is not None]
        if not faces:
            raise LipSyncInputError("reference_image: no face found in it; give a clear photo of the person to follow.")
        return max(faces, key=lambda f: f.area).embedding

    def _choose(self, faces: list[FaceCandidate], width: int, height: int) -> FaceCandidate | None:
        if not faces:
            return None
        t = len(self._landmarks)
        if self._last_centre is not None and t - self._last_seen <= max(self.max_gap_frames, 1):
            dist = [np.linalg.norm(f.centre - self._last_centre) for f in faces]
            best = int(np.argmin(dist))
            return faces[best] if dist[best] < 0.6 * self._last_size else None
        if self.face_choice == "identity":
            sims = [float(f.embedding @ self._reference) if f.embedding is not None else -1.0 for f in faces]
            best = int(np.argmax(sims))
            return faces[best] if sims[best] >= self.identity_threshold else None
        if self.face_choice == "largest":
            return max(faces, key=lambda f: f.area)
        if self.face_choice == "leftmost":
            return min(faces, key=lambda f: f.centre[0])
        if self.face_choice == "rightmost":
            return max(faces, key=lambda f: f.centre[0])
        mid = np.array([width / 2, height / 2])
        return min(faces, key=lambda f: float(np.linalg.norm(f.centre - mid)))

    def feed(self, frames) -> None:
        """Track a batch of frames (T, H, W, 3) float 0..1 or uint8 (array or torch tensor)."""
        frames = check_frames(frames, self.input_name)
        if self._frame_size is None:
            self._frame_size = (int(frames.shape[1]), int(frames.shape[2]))
        elif self._frame_size != tuple(frames.shape[1:3]):
            raise LipSyncInputError(
                f"{self.input_name}: frame size changed from {self._frame_size} to {tuple(frames.shape[1:3])}; "
                "all frames of a video must have one size."
            )
        h, w = self._frame_size
        frames = _to_uint8(frames)
        if isinstance(self._backend, TorchMeshBackend):
            found = self._backend.process_batch(frames)  # the detector runs on the whole batch at once
        else:
            found = (self._backend.process(frame) for frame in frames)
        for frame, faces in zip(frames, found, strict=True):
            chosen = self._choose(faces, w, h)
            if chosen is not None and isinstance(self._backend, InsightFaceBackend):
                chosen = self._backend.mesh_in_box(frame, chosen.box)
            self._content.add(frame, None if chosen is None else chosen.box)
            if chosen is None:
                self._landmarks.append(None)
                continue
            self._last_centre = chosen.centre
            self._last_size = float(np.hypot(chosen.box[2] - chosen.box[0], chosen.box[3] - chosen.box[1]))
            self._last_seen = len(self._landmarks)
            self._landmarks.append(chosen.landmarks.astype(np.float32))

    # ------------------------------------------------------------------ finishing

    def finish(self) -> FaceTrack:
        """Build the FaceTrack of everything fed so far (gap handling, transforms, smoothing, pose)."""
        from ..motion.procrustes import procrustes_align

        n = len(self._landmarks)
        if n == 0:
            raise LipSyncInputError(f"{self.input_name}: no frames were given; pass at least one frame.")
        detected = np.array([lm is not None for lm in self._landmarks])
        if not detected.any():
            raise LipSyncInputError(
                f"{self.input_name}: no face found in any of its {n} frames; use a video where one face is "
                "clearly visible (frontal, not too small)."
            )
        landmarks = np.zeros((n, NUM_LANDMARKS, 3), dtype=np.float32)
        landmarks[detected] = np.stack([lm for lm in self._landmarks if lm is not None])
        usable = detected.copy()
        notes: list[str] = list(self._notes)
        self._content.close()
        for start, stop in _runs(~detected):
            length = stop - start
            where = f"frames {start}-{stop - 1}" if length > 1 else f"frame {start}"
            if self.gap_policy != "interpolate":
                reason = "gap_policy=passthrough"
            elif length > self.max_gap_frames:
                reason = "longer than max_gap_frames"
            else:
                fill, reason = self._content.fillable(start, stop)
                if fill:
                    _fill_gap(landmarks, start, stop)
                    usable[start:stop] = True
                    notes.append(f"{where}: no face, interpolated ({length} frames)")
                    continue
            notes.append(f"{where}: no face, passed through untouched ({length} frames, {reason})")
        # Frames that are not usable hold the nearest usable frame's values so arrays stay finite.
        nearest = _nearest_true(usable)
        landmarks = landmarks[nearest]
        raw = crop_transforms_from_landmarks(landmarks, self.crop_size)
        transforms = raw
        if self.smoothing is not None:
            params = similarity_params(raw, self.crop_size)
            params[:, 3] = np.unwrap(params[:, 3])
            unit = float(np.median(np.exp(-params[:, 2]))) * self.crop_size  # face size in pixels
            scale = np.array([unit, unit, 1.0, 1.0])
            smooth = params.copy()
            # Never smooth across a passed-through gap or a cut (a jump no head makes in one frame).
            jump = np.abs(np.diff(params / scale, axis=0))
            cut = (
                (np.hypot(jump[:, 0], jump[:, 1]) > CUT_MOVE) | (jump[:, 2] > CUT_LOG_SCALE) | (jump[:, 3] > CUT_ANGLE)
            )
            segments = usable.copy()
            breaks = np.flatnonzero(cut) + 1
            for start, stop in _runs(segments):
                inner = [start] + [b for b in breaks if start < b < stop] + [stop]
                for a, b in zip(inner[:-1], inner[1:], strict=True):
                    smooth[a:b] = one_euro_zero_phase(params[a:b] / scale, self.fps, self.smoothing) * scale
                    if a > start:
                        notes.append(f"frame {a}: cut detected, smoothing restarts")
            transforms = similarity_from_params(smooth, self.crop_size)
        rotations = procrustes_align(landmarks).rotation
        return FaceTrack(
            fps=self.fps,
            frame_size=self._frame_size,
            landmarks=landmarks,
            detected=detected,
            usable=usable,
            crop_transforms=transforms.astype(np.float32),
            rotations=rotations.astype(np.float32),
            crop_size=self.crop_size,
            backend=self.backend_name,
            notes=notes,
        )

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D bool array."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _fill_gap(landmarks: np.ndarray, start: int, stop: int) -> None:
    """Linear interpolation between the frames around [start, stop); hold at the video's ends."""
    n = len(landmarks)
    if start == 0 and stop == n:
        return
    if start == 0:
        landmarks[start:stop] = landmarks[stop]
    elif stop == n:
        landmarks[start:stop] = landmarks[start - 1]
    else:
        w = (np.arange(start, stop) - (start - 1)) / (stop - (start - 1))
        a, b = landmarks[start - 1], landmarks[stop]
        landmarks[start:stop] = a[None] * (1 - w[:, None, None]) + b[None] * w[:, None, None]


def _nearest_true(mask: np.ndarray) -> np.ndarray:
    """For each index, the nearest index where mask is True (mask must have one)."""
    idx = np.flatnonzero(mask)
    pos = np.arange(len(mask))
    j = np.clip(np.searchsorted(idx, pos), 1, max(len(idx) - 1, 1))
    if len(idx) == 1:
        return np.full(len(mask), idx[0])
    left, right = idx[j - 1], idx[j]
    return np.where(pos - left <= right - pos, left, right)


def track_faces(
    frames,
    fps: float,
    backend: str = DEFAULT_FACE_BACKEND,
    crop_size: int = 256,
    face_choice: FaceChoice = "largest",
    max_gap_frames: int | None = None,
    gap_policy: GapPolicy = "interpolate",
    smoothing: OneEuroConfig | None = DEFAULT_SMOOTHING,
    batch_size: int = 64,
    input_name: str = "frames",
    **backend_options,
) -> FaceTrack:
    """Track one face through IMAGE frames (T, H, W, 3) float 0..1 / uint8 -> FaceTrack (T entries)."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
    with FaceTracker(
        fps,
        backend=backend,
        crop_size=crop_size,
        face_choice=face_choice,
        max_gap_frames=max_gap_frames,
        gap_policy=gap_policy,
        smoothing=smoothing,
        input_name=input_name,
        **backend_options,
    ) as tracker:
        for start in range(0, len(frames), batch_size):
            tracker.feed(frames[start : start + batch_size])
        return tracker.finish()
