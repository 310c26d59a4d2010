"""A mouth rig on the 478-point MediaPipe mesh: articulation channels -> landmark displacements.

Each channel of ``articulation.CHANNELS`` is a displacement field over the mesh, built once
per face from its own geometry in a face-local frame (x along the eyes, y down, unit = half
the mouth width ``w``), so the same articulation looks the same on a narrow or a wide face.
Fields are smooth weights of where a point sits relative to the lip line: upper lip,
lower lip, around the corners, on the jaw below a pivot at cheek-bone height.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..face.topology import CHIN, LEFT_EYE, LIPS_INNER, LIPS_OUTER, RIGHT_EYE
from .articulation import N_CHANNELS

# Inner lip pairs (upper, lower) facing each other, and the inner/outer corners.
# (13, 14), (312, 317), (311, 402), (310, 318), (415, 324), (191, 95), (80, 88), (81, 178), (82, 87)
INNER_PAIRS = tuple(
    zip(LIPS_INNER[0:5] + LIPS_INNER[16:20], (LIPS_INNER[10], *LIPS_INNER[9:5:-1], *LIPS_INNER[14:10:-1]), strict=True)
)
INNER_UPPER = LIPS_INNER[0:5] + LIPS_INNER[16:20]
INNER_LOWER = LIPS_INNER[6:15]
CORNERS = (LIPS_INNER[5], LIPS_INNER[15], LIPS_OUTER[5], LIPS_OUTER[15])


def _smooth_clip(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass
class FaceFrame:
    """Face-local 2D frame of one mesh: origin at the mouth centre, unit = half mouth width."""

    origin: np.ndarray  # (2,)
    ex: np.ndarray  # (2,) along the eyes (subject's right eye -> left eye)
    ey: np.ndarray  # (2,) down the face
    w: float  # half mouth width in pixels
    iod: float  # inter-ocular distance in pixels

    @classmethod
    def of(cls, mesh: np.ndarray) -> FaceFrame:
        eye_r, eye_l = mesh[list(RIGHT_EYE), :2].mean(0), mesh[list(LEFT_EYE), :2].mean(0)
        ex = (eye_l - eye_r) / np.linalg.norm(eye_l - eye_r)
        ey = np.array([-ex[1], ex[0]])
        origin = 0.5 * (mesh[13, :2] + mesh[14, :2])
        w = 0.5 * float(np.linalg.norm(mesh[291, :2] - mesh[61, :2]))
        return cls(origin, ex, ey, w, float(np.linalg.norm(eye_l - eye_r)))

    def local(self, mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = mesh[..., :2] - self.origin
        return d @ self.ex / self.w, d @ self.ey / self.w


def inter_ocular(mesh: np.ndarray) -> np.ndarray:
    """Distance between the eye centres of (..., 478, 3) meshes (pixels)."""
    return np.linalg.norm(mesh[..., list(LEFT_EYE), :2].mean(-2) - mesh[..., list(RIGHT_EYE), :2].mean(-2), axis=-1)


class MouthRig:
    """Linear displacement fields (one per articulation channel) + asymmetry + a no-overlap clamp."""

    def __init__(self, neutral: np.ndarray):
        self.neutral = np.asarray(neutral, np.float32)
        self.frame = f = FaceFrame.of(self.neutral)
        u, v = f.local(self.neutral)
        # lip line: mid-points of the inner pairs and the corners, as a function of u
        mids_u = [u[list(p)].mean() for p in INNER_PAIRS] + [u[CORNERS[0]], u[CORNERS[1]]]
        mids_v = [v[list(p)].mean() for p in INNER_PAIRS] + [v[CORNERS[0]], v[CORNERS[1]]]
        order = np.argsort(mids_u)
        vline = np.interp(u, np.asarray(mids_u)[order], np.asarray(mids_v)[order])
        dv = v - vline
        band = 0.04 + 0.4 * np.maximum(np.abs(u) - 1.0, 0.0)
        side = np.tanh(dv / band)
        side[list(INNER_UPPER)], side[list(INNER_LOWER)], side[list(CORNERS)] = -1.0, 1.0, 0.0
        lower = 0.5 * (1.0 + side)
        upper = 0.5 * (1.0 - side)
        prof = np.sqrt(np.clip(1.0 - (u / 1.05) ** 2, 0.0, 1.0))
        lip = prof * np.exp(-((dv / 0.45) ** 2))
        outer = np.clip(np.abs(dv) / 0.3, 0.0, 1.0)
        around = np.exp(-((dv / 0.7) ** 2)) * np.exp(-((np.maximum(np.abs(u) - 1.0, 0.0) / 0.7) ** 2))
        corner = np.exp(-(((np.abs(u) - 1.0) / 0.45) ** 2 + (dv / 0.5) ** 2))
        v_eye = float(np.mean(f.local(self.neutral[list(LEFT_EYE + RIGHT_EYE)])[1]))
        v_pivot, v_chin = 0.55 * v_eye, float(v[CHIN])
        jaw = _smooth_clip((v - v_pivot) / (v_chin - v_pivot)) * lower
        uc = np.clip(u, -1.4, 1.4)

        n = len(u)
        dx, dy, dz = (np.zeros((N_CHANNELS, n)) for _ in range(3))
        dx[0], dy[0] = -0.08 * uc * around * (0.5 + 0.5 * lower), 1.4 * jaw  # jaw
        dy[1] = 0.18 * side * lip  # lips_open
        dx[2] = 0.28 * uc * around  # spread
        dx[3], dy[3], dz[3] = -0.32 * uc * around, 0.05 * side * outer * prof, -0.35 * lip  # round
        dx[4], dy[4] = 0.06 * np.sign(u) * corner, -0.25 * corner  # corner_lift
        dy[5], dz[5] = -0.14 * lip * lower - 0.05 * lip * upper, 0.1 * lip * lower  # lower_tuck
        dy[6], dz[6] = -0.06 * side * outer * prof, 0.03 * lip  # press
        field = (dx[..., None] * f.ex + dy[..., None] * f.ey) * f.w  # (C, n, 2)
        basis = np.concatenate([field, (dz * f.w)[..., None]], axis=-1)
        basis[np.abs(basis) < 1e-3] = 0.0
        self.basis = basis.astype(np.float32)  # (C, 478, 3) pixels per unit articulation
        self.side_gain = np.tanh(u).astype(np.float32)  # asymmetry: one side moves more
        self.jaw_shift = (0.2 * f.w * jaw[:, None] * f.ex).astype(np.float32)  # (478, 2) sideways jaw drift

    def landmarks(self, track: np.ndarray, asymmetry: float = 0.0) -> np.ndarray:
        """Articulation (T, C) -> meshes (T, 478, 3) float32 in the neutral mesh's pixel frame."""
        track = np.asarray(track, np.float32)
        disp = np.einsum("tc,cnk->tnk", track, self.basis)
        if asymmetry:
            disp *= (1.0 + asymmetry * self.side_gain)[None, :, None]
            disp[..., :2] += asymmetry * track[:, :1, None] * self.jaw_shift[None]
        return close_overlaps(self.neutral[None] + disp, self.frame)


def close_overlaps(meshes: np.ndarray, frame: FaceFrame) -> np.ndarray:
    """Where an inner lower-lip point rose above its upper partner, put both at their midpoint (lips touch)."""
    meshes = np.array(meshes, np.float32, copy=True)
    up, lo = np.asarray([p[0] for p in INNER_PAIRS]), np.asarray([p[1] for p in INNER_PAIRS])
    gap = (meshes[:, lo, :2] - meshes[:, up, :2]) @ frame.ey  # (T, 9) positive when open
    mid = 0.5 * (meshes[:, lo] + meshes[:, up])
    shut = gap < 0
    meshes[:, up] = np.where(shut[..., None], mid, meshes[:, up])
    meshes[:, lo] = np.where(shut[..., None], mid, meshes[:, lo])
    return meshes


def closed_neutral(mesh: np.ndarray) -> np.ndarray:
    """The same face with the lips just closed: the rest pose every articulation starts from."""
    rig = MouthRig(mesh)
    up, lo = [p[0] for p in INNER_PAIRS], [p[1] for p in INNER_PAIRS]
    gap = float(np.median((mesh[lo, :2] - mesh[up, :2]) @ rig.frame.ey)) / rig.frame.w
    track = np.zeros((1, N_CHANNELS), np.float32)
    track[0, 1] = -gap / 0.36 - 0.05  # lips_open moves each inner lip 0.18 w per unit; overshoot, then clamp
    return rig.landmarks(track)[0]


# Eyelids (MediaPipe eye contours), corners first; the iris rings follow their eye.
_EYES = (
    ((33, 133), (246, 161, 160, 159, 158, 157, 173), (7, 163, 144, 145, 153, 154, 155), tuple(range(468, 473))),
    ((263, 362), (466, 388, 387, 386, 385, 384, 398), (249, 390, 373, 374, 380, 381, 382), tuple(range(473, 478))),
)


def blink_field(neutral: np.ndarray) -> np.ndarray:
    """(478, 3) displacement that closes both eyes (the lids meet just above the lower lid); scale by 0..1.

    Every lid and iris point moves along the face's vertical axis towards the meeting line, an affine squeeze
    per column, so no triangle of the warp folds; the eyelid skin above stretches down over the eye.
    """
    f = FaceFrame.of(neutral)
    u, v = f.local(neutral)
    field = np.zeros_like(np.asarray(neutral, np.float64))

    def curve(ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(u[ids])
        return u[ids][order], v[ids][order]

    for corners, upper, lower, iris in _EYES:
        up_u, up_v = curve(list(corners + upper))
        lo_u, lo_v = curve(list(corners + lower))
        moving = list(upper) + list(lower) + list(iris)
        v_up = np.interp(u[moving], up_u, up_v)
        v_lo = np.interp(u[moving], lo_u, lo_v)
        meet = v_lo - 0.15 * (v_lo - v_up)
        field[moving, :2] = ((meet - v[moving]) * f.w)[:, None] * f.ey
    return field.astype(np.float32)


def blink_curve(rng: np.random.Generator, n_frames: int, fps: float) -> np.ndarray:
    """(n_frames,) eyelid closure 0..1: blinks every ~3.5 s (exponential gaps), 120-220 ms, fast close, slow open."""
    t = np.arange(n_frames) / fps
    out = np.zeros(n_frames)
    start = rng.uniform(0.3, 2.5)
    end = n_frames / fps
    while start < end:
        dur, depth = rng.uniform(0.12, 0.22), rng.uniform(0.85, 1.0)
        x = (t - start) / dur
        close = np.clip(x / 0.35, 0, 1)
        reopen = np.clip((x - 0.35) / 0.65, 0, 1)
        shape = np.where(x < 0.35, _smooth_clip(close), 1 - _smooth_clip(reopen))
        out = np.maximum(out, depth * np.where((x >= 0) & (x <= 1), shape, 0.0))
        start += dur + max(rng.exponential(3.3), 0.8)
    return out.astype(np.float32)
