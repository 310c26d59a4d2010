"""The mouth map: the lips the motion asks for, drawn as area coverage at the latent's resolution."""

import numpy as np
import pytest

from lipsync_core.face import topology
from lipsync_core.motion import MOUTH_INDICES
from lipsync_core.render.conditioning import (
    MOUTH_MAP_CHANNELS,
    MOUTH_MAP_POLYGONS,
    mouth_map,
    to_crop,
)
from lipsync_core.types import LipSyncInputError

POSITION = {int(v): i for i, v in enumerate(MOUTH_INDICES)}


def _points_with(polygon, corners: np.ndarray) -> np.ndarray:
    """Mouth points (1, V, 2) whose ``polygon`` traces the rectangle ``corners`` (others far away, folded)."""
    pts = np.full((1, len(MOUTH_INDICES), 2), -100.0, np.float32)
    n = len(polygon)
    # walk the rectangle's outline with the polygon's n vertices, in order
    perimeter = np.concatenate([np.linspace(corners[i], corners[(i + 1) % 4], n // 4 + 1)[:-1] for i in range(4)])
    loop = perimeter[np.linspace(0, len(perimeter), n, endpoint=False).astype(int)]
    for k, v in enumerate(polygon):
        pts[0, POSITION[v]] = loop[k]
    return pts


def test_coverage_is_the_area_of_the_polygon_in_each_cell():
    # a 16 x 8 crop-pixel rectangle in a 64 px crop drawn at 16 x 16 cells of 4 px: 4 x 2 full cells
    corners = np.array([[20, 40], [36, 40], [36, 48], [20, 48]], np.float32) - 0.5
    pts = _points_with(topology.LIPS_INNER, corners)
    m = mouth_map(pts, 64, 16)
    assert m.shape == (1, MOUTH_MAP_CHANNELS, 16, 16)
    inner = m[0, MOUTH_MAP_POLYGONS.index(topology.LIPS_INNER)]
    assert inner.sum() == pytest.approx(16 * 8 / 16, abs=0.2)  # area in cells
    assert inner[10:12, 5:9].min() == pytest.approx(1.0)
    assert inner[:10].max() == 0 and inner[12:].max() == 0


def test_half_covered_cells_say_half():
    corners = np.array([[20, 40], [38, 40], [38, 44], [20, 44]], np.float32) - 0.5  # ends mid-cell at x = 38
    m = mouth_map(_points_with(topology.LIPS_INNER, corners), 64, 16)[0, 1]
    assert m[10, 9] == pytest.approx(0.5, abs=0.07)


def test_a_wider_opening_covers_more():
    areas = []
    for height in (0, 4, 8):
        corners = np.array([[20, 40], [36, 40], [36, 40 + height], [20, 40 + height]], np.float32)
        areas.append(mouth_map(_points_with(topology.LIPS_INNER, corners), 64, 16)[0, 1].sum())
    assert areas[0] == 0 and areas[0] < areas[1] < areas[2]


def test_points_go_to_the_crop_through_each_frames_transform():
    pts = np.array([[[10.0, 20.0]], [[10.0, 20.0]]], np.float32)
    m = np.array([[[1, 0, 0], [0, 1, 0]], [[0.5, 0, 3], [0, 0.5, -1]]], np.float32)
    np.testing.assert_allclose(to_crop(pts, m), [[[10, 20]], [[8, 9]]])


def test_wrong_points_are_refused():
    with pytest.raises(LipSyncInputError, match="mouth points"):
        mouth_map(np.zeros((2, 5, 2), np.float32), 64, 16)
