"""Canonical crops and paste-back on a real photograph (skimage.data.astronaut)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from lipsync_core.face import (
    apply_transform,
    crop_template,
    lower_half_mask,
    mouth_chin_masks,
    paste_back,
    track_faces,
    warp_to_crops,
)
from lipsync_core.face import topology as topo
from lipsync_core.face.align import MASK_POINTS, fit_similarity_2d, invert_similarity, rescale_transforms
from lipsync_core.face.template import CROP_CENTER, CROP_SCALE
from lipsync_core.motion import rotation_to_vector
from lipsync_core.types import LipSyncInputError


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()  # (512, 512, 3) uint8


def _similarity_copy(
    img: np.ndarray, angle: float, scale: float, shift: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The photo rotated (degrees, counter-clockwise on screen), scaled and shifted; with the 2x3 map used."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += shift
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT), m


def _angle(m: np.ndarray) -> float:
    return float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))


@pytest.mark.parametrize("crop_size", [256, 512])
def test_similar_copies_give_the_same_canonical_crop(astronaut, crop_size):
    ref = track_faces(astronaut[None], fps=25, crop_size=crop_size, smoothing=None)
    assert ref.detected.all()
    ref_crop_lm = apply_transform(ref.crop_transforms[0], ref.landmarks[0, :, :2])
    ref_crop = warp_to_crops(astronaut[None], ref, crop_size)[0]
    for angle, scale, shift in [(15, 1.0, (0, 0)), (-20, 0.8, (30, -20)), (8, 1.25, (-25, 15)), (0, 0.6, (60, 40))]:
        img, m = _similarity_copy(astronaut, angle, scale, shift)
        track = track_faces(img[None], fps=25, crop_size=crop_size, smoothing=None)
        assert track.detected.all()
        crop_lm = apply_transform(track.crop_transforms[0], track.landmarks[0, :, :2])
        err = np.linalg.norm(crop_lm - ref_crop_lm, axis=-1).mean() / crop_size
        assert err < 0.02, (angle, scale, err)
        # The crop transform undoes the image rotation: the angle difference is the applied rotation.
        got = _angle(track.crop_transforms[0]) - _angle(ref.crop_transforms[0])
        assert got == pytest.approx(angle, abs=1.5)  # image y points down: +angle on screen = +angle here
        # ... and so does the 3D head rotation (its roll component).
        roll = np.degrees(rotation_to_vector(track.rotations)[0, 2] - rotation_to_vector(ref.rotations)[0, 2])
        assert roll == pytest.approx(-angle, abs=2.0)
        # The crops themselves agree (same face, same place); borders can differ where the copy was cut.
        crop = warp_to_crops(img[None], track, crop_size)[0]
        inner = slice(crop_size // 8, -crop_size // 8)
        corr = np.corrcoef(crop[inner, inner].ravel(), ref_crop[inner, inner].ravel())[0, 1]
        assert corr > 0.93, (angle, corr)


def test_crop_row_half_is_between_the_nose_and_the_lips():
    for size in (256, 512):
        t = crop_template(size)
        nose = t[list(topo.NOSE), 1].max()  # the nose's lowest point (nostrils) stays in the context half
        assert nose < size / 2 <= t[list(topo.LIPS), 1].min()  # the whole mouth is in the lower half
        assert t[topo.CHIN, 1] < size * 0.85  # the chin inside the crop, with room for the jaw to open
        # The chin at the puppet world's widest opening (2.08 IOD below the rigid centroid) stays inside.
        assert size / 2 + CROP_SCALE * size * (2.08 - CROP_CENTER[1]) < size * 0.98


@pytest.mark.parametrize("crop_size", [256, 512])
@pytest.mark.parametrize("as_float", [False, True])
def test_paste_back_of_the_unmodified_crop_is_lossless(astronaut, crop_size, as_float):
    # Two frames of one still video: the photo and a rotated/scaled/shifted copy of it.
    frames = np.stack([astronaut, _similarity_copy(astronaut, 10, 0.9, (10, 5))[0]])
    if as_float:
        frames = torch.from_numpy(frames.astype(np.float32) / 255.0)
    track = track_faces(frames[:1], fps=25, crop_size=crop_size)
    second = track_faces(frames[1:], fps=25, crop_size=crop_size)
    track = dataclasses.replace(track, **{name: np.concatenate([getattr(track, name), getattr(second, name)])
                                          for name in ("landmarks", "crop_transforms", "usable")})
    crops = warp_to_crops(frames, track, crop_size)
    assert crops.shape == (2, crop_size, crop_size, 3) and crops.dtype == np.float32
    out, masks = paste_back(frames, crops, track)
    src = frames.numpy() if as_float else frames
    assert out.shape == src.shape and out.dtype == src.dtype
    scale = 1.0 if as_float else 255.0
    for i in range(2):
        inside = masks[i] > 0
        assert inside.sum() > 2000  # the lower face, not a speck
        mse = np.mean(((out[i].astype(np.float64) - src[i]) / scale)[inside] ** 2)
        psnr = 10 * np.log10(1.0 / max(mse, 1e-12))
        assert psnr >= 40.0, psnr
        np.testing.assert_array_equal(out[i][~inside], src[i][~inside])  # exactly equal outside
        # The upper face is untouched: the mask is 0 on every eye point and on the eyes' lower lids.
        eyes = track.landmarks[i, list(topo.LEFT_EYE) + list(topo.RIGHT_EYE), :2].round().astype(int)
        assert masks[i][eyes[:, 1], eyes[:, 0]].max() == 0.0


def test_mouth_chin_mask_covers_mouth_and_chin_only(astronaut):
    size = 256
    half = lower_half_mask(size)
    assert half.shape == (size, size) and half[: size // 2].max() == 0 and half[size // 2 :].min() == 1
    soft = lower_half_mask(size, feather=16)
    assert soft[: size // 2].max() == 0 and soft[-1].min() == 1 and 0 < soft[size // 2 + 8, 0] < 1
    m = mouth_chin_masks(None, size)[0]
    t = crop_template(size)
    for point in (topo.UPPER_INNER_LIP, topo.LOWER_INNER_LIP, *topo.MOUTH_CORNERS, topo.CHIN, 17):
        x, y = t[point].round().astype(int)
        assert m[y, x] > 0.9, point  # the lips, the corners and the chin are generated
    x, y = t[0].round().astype(int)  # the upper lip's top edge sits on the S/2 row: the blend's soft edge
    assert m[y, x] > 0.5
    assert m[: size // 2].max() == 0.0  # nothing above the lower half
    for point in (topo.NOSE_TIP, 2, 98, 327, 234, 454, 93, 323):  # nose and cheeks are kept exactly
        x, y = t[point].round().astype(int)
        assert m[y, x] == 0.0, point
    assert m[:, :4].max() == 0.0 and m[:, -4:].max() == 0.0  # zero at the crop sides
    assert len(np.unique(np.round(m, 3))) > 20  # a feathered ramp, not a hard edge
    chin = t[topo.CHIN].round().astype(int)
    assert m[min(chin[1] + int(0.08 * size), size - 1), chin[0]] == 0.0  # below the chin: untouched


def test_mouth_chin_mask_follows_an_opening_jaw():
    size = 256
    t = crop_template(size)
    points = t[MASK_POINTS]
    opened = points.copy()
    opened[len(topo.LIPS_OUTER):, 1] += 8  # the jaw drops 8 px
    closed_mask = mouth_chin_masks(points[None], size)[0]
    both = mouth_chin_masks(np.concatenate([points, opened])[None], size)[0]
    x, y = t[topo.CHIN].round().astype(int)
    assert closed_mask[y + 8, x] < both[y + 8, x] and both[y + 8, x] > 0.9


def test_color_match_pulls_the_generated_region_to_the_frame(astronaut):
    track = track_faces(astronaut[None], fps=25)
    crops = warp_to_crops(astronaut[None], track, 256)
    tinted = np.clip(crops + np.array([0.12, -0.05, 0.0], np.float32), 0, 1)
    plain, masks = paste_back(astronaut[None], tinted, track)
    matched, _ = paste_back(astronaut[None], tinted, track, color_match_strength=1.0)
    inside = masks[0] > 0.5

    def err(x):
        return np.abs(x[0][inside].astype(float) - astronaut[inside]).mean()

    assert err(matched) < 0.4 * err(plain)


def test_unusable_frames_pass_through_untouched(astronaut):
    frames = np.stack([astronaut] * 3)
    track = track_faces(frames, fps=25)
    crops = np.zeros((3, 256, 256, 3), np.float32)  # black crops would show if pasted
    usable = np.array([True, False, True])
    out, masks = paste_back(frames, crops, track, usable=usable)
    np.testing.assert_array_equal(out[1], frames[1])
    assert masks[1].max() == 0 and masks[0].max() > 0
    assert not np.array_equal(out[0], frames[0])


def test_transform_helpers_and_errors(astronaut):
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (4, 30, 2))
    ang, s, t = 0.3, 1.7, np.array([5.0, -3.0])
    r = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    m = fit_similarity_2d(src, src @ r.T + t)
    np.testing.assert_allclose(m[:, :, :2], np.broadcast_to(r, (4, 2, 2)), atol=1e-9)
    np.testing.assert_allclose(apply_transform(invert_similarity(m), apply_transform(m, src)), src, atol=1e-9)
    big = rescale_transforms(m, 256, 512)
    np.testing.assert_allclose(apply_transform(big, src), (apply_transform(m, src) + 0.5) * 2 - 0.5, atol=1e-9)
    track = track_faces(astronaut[None], fps=25)
    with pytest.raises(LipSyncInputError, match="must match"):
        warp_to_crops(np.stack([astronaut] * 2), track, 256)
    with pytest.raises(LipSyncInputError, match="crops"):
        paste_back(astronaut[None], np.zeros((1, 256, 128, 3)), track)
    with pytest.raises(LipSyncInputError, match="frames"):
        warp_to_crops(np.zeros((2, 3)), track, 256)


def test_large_frames_and_downscaled_crops(astronaut):
    """A face filling a 1080p frame, cropped at 256 (shrink > 2x: prefiltered), round-trips at 512."""
    big = cv2.resize(astronaut, (1536, 1536), interpolation=cv2.INTER_CUBIC)[200:1280, :]
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[:, 192:1728] = big
    track = track_faces(frame[None], fps=30, crop_size=256)
    assert track.detected.all() and track.frame_size == (1080, 1920)
    crop = warp_to_crops(frame[None], track, 256)
    ref = warp_to_crops(astronaut[None], track_faces(astronaut[None], fps=30, crop_size=256), 256)
    inner = slice(32, -32)
    assert np.corrcoef(crop[0, inner, inner].ravel(), ref[0, inner, inner].ravel())[0, 1] > 0.95
    crops512 = warp_to_crops(frame[None], track, 512)
    out, masks = paste_back(frame[None], crops512, track)
    inside = masks[0] > 0
    mse = np.mean(((out[0].astype(float) - frame) / 255.0)[inside] ** 2)
    assert 10 * np.log10(1 / mse) > 40
    np.testing.assert_array_equal(out[0][~inside], frame[~inside])
