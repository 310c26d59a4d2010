"""Named index sets of the MediaPipe Face Mesh (478 points with iris refinement).

Taken from MediaPipe's published face-mesh connection lists, ordered as closed
loops, so every module (tracking, mouth model, puppet world, masks) names the
same points the same way. Index 0 is the upper-lip top centre, 17 the lower-lip
bottom centre, 13/14 the inner-lip centres, 61/291 the mouth corners, 152 the
chin, 1 the nose tip.
"""

from __future__ import annotations

import numpy as np

# Outer lip contour, clockwise from the upper-lip top centre.
LIPS_OUTER = (0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146, 61, 185, 40, 39, 37)
# Inner lip contour (the mouth opening), from the upper inner centre.
LIPS_INNER = (13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78, 191, 80, 81, 82)
# Face oval, clockwise from the forehead top (10); the chin is 152.
FACE_OVAL = (
    10,
    338,
    297,
    332,
    284,
    251,
    389,
    356,
    454,
    323,
    361,
    288,
    397,
    365,
    379,
    378,
    400,
    377,
    152,
    148,
    176,
    149,
    150,
    136,
    172,
    58,
    132,
    93,
    234,
    127,
    162,
    21,
    54,
    103,
    67,
    109,
)
# Lower part of the oval, from below the right ear (323) round the chin to below the left (93).
JAW = (323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93)
# The jaw below the mouth, from under the subject's left mouth corner round the chin to under the right.
LOWER_JAW = (365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136)
LEFT_EYE = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
RIGHT_EYE = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440)
NOSE_TIP = 1
CHIN = 152
MOUTH_CORNERS = (61, 291)
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14

LIPS = tuple(sorted(set(LIPS_OUTER) | set(LIPS_INNER)))
# Points that do not move when a person speaks: eyes, nose, upper oval. Rigid alignment
# (Procrustes) uses these so that mouth motion does not leak into the head pose.
# The upper oval is taken symmetrically (10 and 8 mirrored pairs, 454..234 via the forehead);
# 93 / 323, where the jaw starts, are left out.
RIGID = tuple(sorted(set(LEFT_EYE) | set(RIGHT_EYE) | set(NOSE) | set(FACE_OVAL[:9]) | set(FACE_OVAL[-8:])))


def as_array(indices: tuple[int, ...]) -> np.ndarray:
    """Index tuple -> int64 array, for fancy indexing of (..., 478, 3) landmark arrays."""
    return np.asarray(indices, dtype=np.int64)
