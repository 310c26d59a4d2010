"""Puppet identities: real photographs shipped by installed packages, varied without downloads.

Base photos: scikit-image's ``astronaut`` (Eileen Collins) and matplotlib's ``grace_hopper``.
From each, a seeded ``IdentitySpec`` makes further identities: mirrored, face shape morphed
by a mesh warp (face/jaw width, chin length, eye size, nose width, mouth width, lip
thickness), recoloured (hue, saturation, brightness). MediaPipe's face mesh (the torch port in
``lipsync_core.face.torch_mesh``) finds the 478 landmarks once per base photo and mirror; a morph moves the landmarks
with the pixels, so the mesh stays the ground truth of the image.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..face.topology import FACE_OVAL, LEFT_EYE, LIPS, NOSE, RIGHT_EYE
from ..types import LipSyncInputError
from .render import MeshWarp, border_anchors, triangulate, warp_image
from .rig import INNER_PAIRS, FaceFrame, MouthRig, blink_field, closed_neutral

N_MORPH = 7  # face width, jaw width, chin length, eye size, nose width, mouth width, lip thickness


def _astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[..., :3])


def _grace_hopper() -> np.ndarray:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


PHOTOS = {"astronaut": _astronaut, "grace_hopper": _grace_hopper}


@dataclass(frozen=True)
class IdentitySpec:
    """Which photo and how it is varied. morph: N_MORPH values in about [-1, 1]."""

    photo: str = "astronaut"
    mirror: bool = False
    morph: tuple[float, ...] = field(default_factory=lambda: (0.0,) * N_MORPH)
    hue: float = 0.0  # degrees
    saturation: float = 1.0
    brightness: float = 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["morph"] = [float(x) for x in self.morph]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> IdentitySpec:
        return cls(d["photo"], bool(d["mirror"]), tuple(float(x) for x in d["morph"]), float(d["hue"]),
                   float(d["saturation"]), float(d["brightness"]))

    @classmethod
    def sample(cls, rng: np.random.Generator, photo: str | None = None) -> IdentitySpec:
        names = sorted(PHOTOS)
        pick = names[int(rng.integers(len(names)))]
        return cls(
            photo=photo or pick,
            mirror=bool(rng.random() < 0.5),
            morph=tuple(float(x) for x in np.clip(rng.normal(0.0, 0.5, N_MORPH), -1.0, 1.0)),
            hue=float(rng.uniform(-12.0, 12.0)),
            saturation=float(rng.uniform(0.75, 1.25)),
            brightness=float(rng.uniform(0.85, 1.12)),
        )


@dataclass
class Identity:
    """A face ready to animate: canvas image (RGB, output scale plus margin), its mesh and rest pose."""

    spec: IdentitySpec
    image: np.ndarray  # (C, C, 3) uint8
    mesh: np.ndarray  # (478, 3) pixels: the landmarks of ``image``
    neutral: np.ndarray  # (478, 3) the same face with closed lips (rest pose)
    rig: MouthRig
    anchors: np.ndarray  # (B, 2) fixed border points
    triangles: np.ndarray  # (K, 3) over mesh + anchors
    lip_rgb: np.ndarray  # (3,) mean lip colour (the cavity is drawn as a dark shade of it)
    blink: np.ndarray  # (478, 3) displacement that shuts both eyes
    warp_source: np.ndarray  # (478, 2) where the warp samples the photo: ``mesh`` with the inner lips pulled
    # into the lip body where the photo's mouth is open, so a closed lip line shows lip, not teeth or gap


def face_mesh_available() -> bool:
    """True: the puppet world meshes its photos with the shipped torch port of MediaPipe's face mesh."""
    return True


@functools.lru_cache(maxsize=1)
def _face_mesh():
    from ..face.torch_mesh import TorchFaceMesh

    return TorchFaceMesh(max_faces=1, static=True, min_detection=0.5, device="cpu")


def detect_mesh(image_rgb: np.ndarray) -> np.ndarray | None:
    """MediaPipe's face mesh (478, 3) in pixels (z scaled like x), or None when no face is found.

    The torch port (:mod:`lipsync_core.face.torch_mesh`) in static-image mode, as the mediapipe package's
    legacy FaceMesh(static_image_mode=True, refine_landmarks=True) did before.
    """
    h, w = image_rgb.shape[:2]
    faces = _face_mesh().process_batch(np.ascontiguousarray(image_rgb)[None])[0]
    if not faces:
        return None
    lm = faces[0]
    return np.stack([lm[:, 0] * w, lm[:, 1] * h, lm[:, 2] * w], axis=1).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _base(photo: str, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
    if photo not in PHOTOS:
        raise LipSyncInputError(f"identity photo {photo!r} is unknown; use one of {sorted(PHOTOS)}")
    img = PHOTOS[photo]()
    if mirror:
        img = np.ascontiguousarray(img[:, ::-1])
    mesh = detect_mesh(img)
    if mesh is None:  # pragma: no cover - the shipped photos are known to work
        raise RuntimeError(f"MediaPipe found no face in photo {photo!r}")
    return img, mesh


def canvas_size(size: int) -> int:
    """Canvas side for an output size: the margin lets the head move without showing the border."""
    return int(round(size * 1.3))


def _crop_to_canvas(img: np.ndarray, mesh: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Level the eyes, scale the face (forehead-chin) to 0.5 * size, centre it on a canvas."""
    c = canvas_size(size)
    eye_r, eye_l = mesh[list(RIGHT_EYE), :2].mean(0), mesh[list(LEFT_EYE), :2].mean(0)
    roll = np.degrees(np.arctan2(eye_l[1] - eye_r[1], eye_l[0] - eye_r[0]))
    face_h = float(np.linalg.norm(mesh[10, :2] - mesh[152, :2]))
    scale = 0.5 * size / face_h
    centre = 0.5 * (mesh[10, :2] + mesh[152, :2])
    pre = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else img
    pre_scale = scale if scale < 1 else 1.0
    a = np.deg2rad(roll)
    rest = scale / pre_scale
    r = rest * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # rotate by -roll
    t = np.array([c / 2, c / 2]) - r @ (centre * pre_scale)
    m = np.concatenate([r, t[:, None]], axis=1)
    canvas = cv2.warpAffine(pre, m, (c, c), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    xy = (mesh[:, :2] * pre_scale) @ r.T + t
    return canvas, np.concatenate([xy, mesh[:, 2:] * scale], axis=1).astype(np.float32)


def _morph_targets(mesh: np.ndarray, morph: tuple[float, ...]) -> np.ndarray:
    """Face-shape morph of the mesh (pixels); the image follows by a piecewise-affine warp."""
    f = FaceFrame.of(mesh)
    centre = mesh[list(FACE_OVAL), :2].mean(0)
    d = mesh[:, :2] - centre
    x, y = d @ f.ex, d @ f.ey
    face_h = float(np.linalg.norm(mesh[10, :2] - mesh[152, :2]))
    yn = y / (0.5 * face_h)  # -1 forehead, +1 chin
    k = list(morph) + [0.0] * (N_MORPH - len(morph))
    dx = k[0] * 0.07 * x + k[1] * 0.1 * x * np.clip(yn, 0, 1) ** 2
    dy = k[2] * 0.06 * face_h * np.clip(yn, 0, 1) ** 2
    out = mesh.copy()
    out[:, :2] += dx[:, None] * f.ex + dy[:, None] * f.ey
    for eye in (LEFT_EYE, RIGHT_EYE):  # eye size (the iris points 468-477 follow their eye)
        idx = list(eye) + (list(range(468, 473)) if eye is RIGHT_EYE else list(range(473, 478)))
        ec = out[list(eye), :2].mean(0)
        out[idx, :2] = ec + (out[idx, :2] - ec) * (1 + 0.1 * k[3])
    nc = out[list(NOSE), :2].mean(0)
    nd = (out[list(NOSE), :2] - nc) @ f.ex
    out[list(NOSE), :2] += (0.15 * k[4] * nd)[:, None] * f.ex
    lips = list(LIPS)
    mc = 0.5 * (out[13, :2] + out[14, :2])
    ld = out[lips, :2] - mc
    out[lips, :2] += (0.08 * k[5] * (ld @ f.ex))[:, None] * f.ex + (0.12 * k[6] * (ld @ f.ey))[:, None] * f.ey
    return out


def _recolour(img: np.ndarray, spec: IdentitySpec) -> np.ndarray:
    if spec.hue == 0 and spec.saturation == 1 and spec.brightness == 1:
        return img
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + spec.hue * 256.0 / 360.0) % 256.0
    hsv[..., 1] = np.clip(hsv[..., 1] * spec.saturation, 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * spec.brightness, 0, 255)
    return cv2.cvtColor(np.round(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)


@functools.lru_cache(maxsize=32)
def make_identity(spec: IdentitySpec, size: int) -> Identity:
    """Prepare an identity for an output size (cached: MediaPipe runs once per photo and mirror)."""
    img, mesh = _base(spec.photo, spec.mirror)
    canvas, mesh = _crop_to_canvas(img, mesh, size)
    c = canvas.shape[0]
    anchors = border_anchors(c, c)
    if any(spec.morph):
        target = _morph_targets(mesh, spec.morph)
        pts_src = np.concatenate([mesh[:, :2], anchors])
        pts_tgt = np.concatenate([target[:, :2], anchors])
        warp = MeshWarp(pts_src, triangulate(pts_src), pts_tgt[None], (c, c))
        canvas, mesh = warp_image(canvas, warp), target
    canvas = _recolour(canvas, spec)
    neutral = closed_neutral(mesh)
    rig = MouthRig(neutral)
    # triangulate a half-open mouth, so the inner lips (coincident at rest) stay separate vertices
    probe = np.zeros((1, rig.basis.shape[0]), np.float32)
    probe[0, 0] = 0.6
    opened = rig.landmarks(probe)[0]
    triangles = triangulate(np.concatenate([opened[:, :2], anchors]))
    lip_mask = np.zeros(canvas.shape[:2], np.uint8)
    from ..face.topology import LIPS_OUTER

    cv2.fillPoly(lip_mask, [np.round(mesh[list(LIPS_OUTER), :2]).astype(np.int32)], 1)
    lip_rgb = canvas[lip_mask > 0].reshape(-1, 3).mean(0) if lip_mask.any() else np.array([150.0, 80, 80])
    warp_source = mesh[:, :2].copy()
    up, lo = [p[0] for p in INNER_PAIRS], [p[1] for p in INNER_PAIRS]
    gap = (mesh[lo, :2] - mesh[up, :2]) @ rig.frame.ey
    pull = np.clip(gap / 2.0, 0.0, 0.006 * size)[:, None] * rig.frame.ey
    warp_source[up] -= pull
    warp_source[lo] += pull
    return Identity(spec, canvas, mesh, neutral, rig, anchors, triangles, lip_rgb.astype(np.float32),
                    blink_field(neutral), warp_source.astype(np.float32))
