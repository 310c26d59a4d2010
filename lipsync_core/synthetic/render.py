"""Rendering puppet frames: piecewise-affine mesh warp, drawn mouth interior, head motion, lighting.

One ``cv2.remap`` per frame does everything geometric: output pixel -> (inverse head
similarity) -> canvas point -> (inverse piecewise-affine warp of the triangles that move)
-> source pixel. Only triangles whose vertices move are rasterised (a triangle-id image
over their bounding box), so the cost is a few hundred ``fillConvexPoly`` calls and a few
vectorised array operations per frame.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from ..face.topology import LIPS_INNER
from .rig import FaceFrame


def border_anchors(width: int, height: int, per_side: int = 6) -> np.ndarray:
    """Fixed points along the canvas border, so the warp is the identity away from the face."""
    xs = np.linspace(0, width - 1, per_side)
    ys = np.linspace(0, height - 1, per_side)
    pts = [(x, 0) for x in xs] + [(x, height - 1) for x in xs] + [(0, y) for y in ys[1:-1]] + [
        (width - 1, y) for y in ys[1:-1]
    ]
    return np.asarray(pts, np.float32)


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (K, 3) over 2D points (mesh + anchors)."""
    return Delaunay(np.asarray(points, np.float64)[:, :2]).simplices.astype(np.int32)


class MeshWarp:
    """Backward piecewise-affine warp from a source image with points ``src`` to targets that move some points.

    src: (P, 2) source positions (mesh + fixed anchors), in source-image pixels.
    triangles: (K, 3) indices into the points.
    targets: (F, P, 2) target positions per frame; only triangles that move in some frame are rasterised.
    """

    def __init__(self, src: np.ndarray, triangles: np.ndarray, targets: np.ndarray, image_shape: tuple[int, int]):
        self.src = np.asarray(src, np.float64)
        self.targets = np.asarray(targets, np.float64)
        moved = np.abs(self.targets - self.src[None]).max(axis=(0, 2)) > 0.02  # (P,)
        self.active = np.asarray(triangles)[moved[np.asarray(triangles)].any(axis=1)]
        h, w = image_shape
        if len(self.active):
            pts = self.targets[:, np.unique(self.active)]
            x0, y0 = np.floor(pts.min(axis=(0, 1))).astype(int) - 1
            x1, y1 = np.ceil(pts.max(axis=(0, 1))).astype(int) + 2
            self.box = (max(x0, 0), max(y0, 0), min(x1, w), min(y1, h))
        else:
            self.box = (0, 0, 0, 0)
        self._ids = np.empty((max(self.box[3] - self.box[1], 0), max(self.box[2] - self.box[0], 0)), np.int32)

    def affines(self, frame: int) -> np.ndarray:
        """(K_active, 2, 3) maps target -> source for every active triangle at ``frame``."""
        tgt, src = self.targets[frame][self.active], self.src[self.active]  # (K, 3, 2)
        m_t = np.concatenate([tgt.transpose(0, 2, 1), np.ones((len(tgt), 1, 3))], axis=1)  # (K, 3, 3)
        det = np.linalg.det(m_t)
        m_t[np.abs(det) < 1e-6] += np.eye(3) * 1e-3  # degenerate triangles cover no pixel; keep inv finite
        return src.transpose(0, 2, 1) @ np.linalg.inv(m_t)  # (K, 2, 3)

    def triangle_ids(self, frame: int) -> np.ndarray:
        """Index of the active triangle covering each pixel of the box (-1: none) at ``frame``."""
        ids = self._ids
        ids.fill(-1)
        x0, y0 = self.box[0], self.box[1]
        tgt = self.targets[frame][self.active]
        e1, e2 = tgt[:, 1] - tgt[:, 0], tgt[:, 2] - tgt[:, 0]
        area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
        fixed = np.round((tgt - (x0, y0)) * 16).astype(np.int32)
        # outlines of proper triangles first, then interiors: pixels on seams that no interior covers still get a
        # neighbouring triangle's (continuous) map. Slivers (a closed mouth's collapsed triangles) are skipped:
        # their affine maps a line onto a large source area and would speckle the lip line.
        proper = np.nonzero(area > 1.0)[0]
        for k in proper:
            cv2.polylines(ids, [fixed[k]], True, int(k), thickness=2, lineType=cv2.LINE_8, shift=4)
        for k in proper:
            cv2.fillConvexPoly(ids, fixed[k], int(k), lineType=cv2.LINE_8, shift=4)
        return ids

    def source_coords(self, frame: int, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map target-space points (any shape, float) to source-space points."""
        if not len(self.active):
            return px, py
        ids = self.triangle_ids(frame)
        x0, y0, x1, y1 = self.box
        ix, iy = np.rint(px).astype(np.int64), np.rint(py).astype(np.int64)
        inside = (ix >= x0) & (ix < x1) & (iy >= y0) & (iy < y1)
        tri = np.full(px.shape, -1, np.int64)
        tri[inside] = ids[iy[inside] - y0, ix[inside] - x0]
        hit = tri >= 0
        a = self.affines(frame)[tri[hit]]  # (N, 2, 3)
        sx, sy = px.copy(), py.copy()
        hx, hy = px[hit], py[hit]
        sx[hit] = a[:, 0, 0] * hx + a[:, 0, 1] * hy + a[:, 0, 2]
        sy[hit] = a[:, 1, 0] * hx + a[:, 1, 1] * hy + a[:, 1, 2]
        return sx, sy


def warp_image(image: np.ndarray, warp: MeshWarp, frame: int = 0) -> np.ndarray:
    """Warp a whole image by one frame of a MeshWarp (identity-preparation use: face morphs)."""
    h, w = image.shape[:2]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    sx, sy = warp.source_coords(frame, gx, gy)
    return cv2.remap(image, sx.astype(np.float32), sy.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT101)


def similarity(angle_deg: float, scale: float, centre: np.ndarray, to: np.ndarray) -> np.ndarray:
    """2x3 matrix: rotate by angle and scale about ``centre``, then move ``centre`` to ``to``."""
    a = np.deg2rad(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.concatenate([r, (np.asarray(to) - r @ np.asarray(centre))[:, None]], axis=1)


def smooth_noise(rng: np.random.Generator, n: int, fps: float, dims: int, freqs=(0.15, 0.9)) -> np.ndarray:
    """(n, dims) smooth random curves in about [-1, 1]: sums of 3 slow sinusoids with random phases."""
    t = np.arange(n) / fps
    out = np.zeros((n, dims))
    for d in range(dims):
        f = rng.uniform(freqs[0], freqs[1], 3)
        ph = rng.uniform(0, 2 * np.pi, 3)
        amp = rng.uniform(0.5, 1.0, 3)
        out[:, d] = (amp[None] * np.sin(2 * np.pi * f[None] * t[:, None] + ph[None])).sum(1) / amp.sum()
    return out


def draw_mouth_interior(
    frame: np.ndarray, inner: np.ndarray, frame_axes: FaceFrame, scale: float, cavity_rgb: np.ndarray,
    teeth_rgb: np.ndarray,
) -> None:
    """Paint the mouth opening (inner-lip polygon, output pixels) in place: dark cavity, upper and lower teeth.

    inner: (20, 2) inner lip contour in LIPS_INNER order (0-4, 16-19 upper; 6-14 lower; 5, 15 corners).
    """
    upper = inner[[15, 16, 17, 18, 19, 0, 1, 2, 3, 4, 5]]  # corner 78 -> centre 13 -> corner 308
    lower = inner[[15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5]]  # corner 78 -> centre 14 -> corner 308
    opening = float(np.max(np.abs((lower - upper)[1:-1] @ frame_axes.ey)))
    h, w = frame.shape[:2]
    if opening < 0.6:  # closed: a soft, darker line where the lips meet (hides the seam of the two warped lips)
        line = np.round(0.5 * (upper + lower) * 8).astype(np.int32)
        x0, y0 = np.maximum(np.floor(inner.min(0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(inner.max(0)).astype(int) + 3, (w, h))
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.polylines(mask, [line - np.array([x0, y0]) * 8], False, 255, thickness=1, lineType=cv2.LINE_AA, shift=3)
        alpha = (mask.astype(np.float32) / 255.0 * 0.35)[..., None]
        region = frame[y0:y1, x0:x1].astype(np.float32)
        lip_line = np.asarray(cavity_rgb, np.float32) * 1.8
        frame[y0:y1, x0:x1] = np.clip(region * (1 - alpha) + lip_line * alpha + 0.5, 0, 255).astype(np.uint8)
        return
    x0, y0 = np.floor(inner.min(0)).astype(int) - 2
    x1, y1 = np.ceil(inner.max(0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    pw, ph = x1 - x0, y1 - y0
    off = np.array([x0, y0])
    fx = lambda p: np.round((p - off) * 8).astype(np.int32)  # noqa: E731 - 3 bits of sub-pixel precision
    mask = np.zeros((ph, pw), np.uint8)
    cv2.fillPoly(mask, [fx(inner)], 255, lineType=cv2.LINE_AA, shift=3)
    patch = np.empty((ph, pw, 3), np.float32)
    patch[:] = cavity_rgb
    # depth shading: darker towards the middle of the opening
    centre = inner.mean(0) - off
    yy, xx = np.mgrid[0:ph, 0:pw]
    rad = np.hypot((xx - centre[0]) / max(pw / 2, 1), (yy - centre[1]) / max(ph / 2, 1))
    patch *= (0.55 + 0.45 * np.clip(rad, 0, 1))[..., None]
    down = frame_axes.ey * scale * frame_axes.w
    teeth = np.zeros((ph, pw), np.uint8)
    band = np.concatenate([upper, (upper + 0.2 * down)[::-1]])
    cv2.fillPoly(teeth, [fx(band)], 255, lineType=cv2.LINE_AA, shift=3)
    lowband = np.concatenate([lower, (lower - 0.08 * down)[::-1]])
    low = np.zeros((ph, pw), np.uint8)
    cv2.fillPoly(low, [fx(lowband)], 255, lineType=cv2.LINE_AA, shift=3)
    # teeth fade into shadow towards the corners
    half = max(np.linalg.norm(inner[5] - inner[15]) / 2, 1.0)
    mid_x = 0.5 * (inner[5] + inner[15]) - off
    across = np.abs((xx - mid_x[0]) * frame_axes.ex[0] + (yy - mid_x[1]) * frame_axes.ex[1]) / half
    shade = np.clip(1.0 - 0.6 * across**3, 0.3, 1.0)[..., None]
    ta = (teeth.astype(np.float32) / 255.0)[..., None]
    la = (low.astype(np.float32) / 255.0)[..., None] * 0.8
    patch = patch * (1 - ta) + ta * teeth_rgb * shade
    patch = patch * (1 - la) + la * teeth_rgb * 0.85 * shade
    patch = cv2.GaussianBlur(patch, (3, 3), 0.6)
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(region * (1 - alpha) + patch * alpha + 0.5, 0, 255).astype(np.uint8)


INNER_IDX = np.asarray(LIPS_INNER)
