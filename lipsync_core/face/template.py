"""The canonical face and the canonical crop (docs/FRONTEND.md, "Canonical crop").

``CANONICAL_FACE`` (478, 3) is a frontal MediaPipe mesh in *aligned units*: image axes
(x right, y down, z away from the camera), origin at the centroid of the ``RIGID`` points,
scaled so that the distance between the two eye centres (means of ``LEFT_EYE`` and
``RIGHT_EYE``) is 1 ("IOD units"). It was measured once on ``skimage.data.astronaut()``
and frontalised with the eye axis (x) and the eye-midpoint -> chin direction (y); see
:func:`frontalise`. It is the reference of every Procrustes alignment and of the crop.

The canonical crop of size S maps aligned (x, y) to crop pixels as
``u = S/2 + CROP_SCALE * S * (x - CROP_CENTER[0])``, ``v = S/2 + CROP_SCALE * S * (y - CROP_CENTER[1])``:
the eyes sit at v ~ 0.21 S, the nose tip at ~0.42 S, the upper lip's top at ~0.51 S, the mouth at
~0.58 S and the chin at ~0.83 S, so the row S/2 runs between the nose and the upper lip: the renderer's
"lower half" (rows >= S/2) holds the mouth, jaw and chin and none of the nose; the chin at the widest
opening of the puppet world (2.08 IOD below the rigid centroid) still lies inside (0.97 S). This framing
puts 1.17x more crop pixels on the mouth than the first one (0.30, centre 0.25, nose tip in the lower
half), and the renderer's config records it (``crop_framing``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from . import topology

_DATA = Path(__file__).with_name("data") / "canonical_face.npy"

# Crop pixels per IOD unit, as a fraction of the crop size S.
CROP_SCALE = 0.35
# Aligned point that lands on the crop centre (S/2, S/2): between the nose and the upper lip.
CROP_CENTER = (0.0, 0.74)
# The framing the first renderers were trained with (their config records none).
LEGACY_FRAMING = (0.30, 0.0, 0.25)


def crop_framing() -> tuple[float, float, float]:
    """(scale, centre x, centre y) of the canonical crop: recorded in a renderer's config."""
    return (CROP_SCALE, *CROP_CENTER)


@lru_cache(maxsize=1)
def _canonical() -> np.ndarray:
    face = np.load(_DATA).astype(np.float32)
    face.setflags(write=False)
    return face


def canonical_face() -> np.ndarray:
    """The (478, 3) canonical mean face in IOD units (read-only)."""
    return _canonical()


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) eye centres (..., 3) of (..., 478, 3) landmarks (subject's left = image right)."""
    left = landmarks[..., topology.as_array(topology.LEFT_EYE), :].mean(axis=-2)
    right = landmarks[..., topology.as_array(topology.RIGHT_EYE), :].mean(axis=-2)
    return left, right


def interocular(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the eye centres, (...) for (..., 478, 3) landmarks."""
    left, right = eye_centres(landmarks)
    return np.linalg.norm(left - right, axis=-1)


def frontalise(mesh: np.ndarray) -> np.ndarray:
    """A (478, 3) mesh in pixels -> a frontal mesh in IOD units (how CANONICAL_FACE was made)."""
    mesh = np.asarray(mesh, dtype=np.float64)
    left, right = eye_centres(mesh)
    x = left - right
    iod = np.linalg.norm(x)
    x /= iod
    y = mesh[topology.CHIN] - (left + right) / 2
    y -= x * (y @ x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    rot = np.stack([x, y, z])
    centre = mesh[topology.as_array(topology.RIGID)].mean(axis=0)
    return ((mesh - centre) @ rot.T / iod).astype(np.float32)


def crop_template(crop_size: int) -> np.ndarray:
    """(478, 2) canonical landmark positions in pixels of a crop of ``crop_size``."""
    face = canonical_face()[:, :2].astype(np.float64)
    centre = np.asarray(CROP_CENTER)
    return (crop_size / 2 + CROP_SCALE * crop_size * (face - centre)).astype(np.float32)
