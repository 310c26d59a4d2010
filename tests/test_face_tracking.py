"""Face tracking on real photographs: gaps, no-face errors, choice of face, streaming, smoothing."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from lipsync_core.face import FaceTracker, OneEuroConfig, track_faces
from lipsync_core.face.smoothing import one_euro, one_euro_zero_phase
from lipsync_core.types import LipSyncInputError
from tests.dropouts import miss_faces


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


def _video(img: np.ndarray, n: int, dx: float = 1.5, dy: float = 0.5) -> np.ndarray:
    """A short 'video': the photo drifting slowly (sub-pixel shifts)."""
    frames = []
    for i in range(n):
        m = np.float32([[1, 0, dx * i], [0, 1, dy * i]])
        frames.append(cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)


def test_tracker_dropouts_are_interpolated_or_passed_through(astronaut, monkeypatch):
    frames = _video(astronaut, 10)
    miss_faces(monkeypatch, {3, 4})  # the face is there; the detector misses it
    track = track_faces(frames, fps=25, max_gap_frames=3)
    assert len(track) == 10 and track.landmarks.shape == (10, 478, 3)
    assert track.detected.tolist() == [True] * 3 + [False] * 2 + [True] * 5
    assert track.usable.all() and track.interpolated.tolist() == [False] * 3 + [True] * 2 + [False] * 5
    assert any("frames 3-4" in n and "interpolated" in n for n in track.notes)
    # Linear interpolation between frames 2 and 5.
    np.testing.assert_allclose(track.landmarks[3], (2 * track.landmarks[2] + track.landmarks[5]) / 3, atol=1e-3)
    assert np.isfinite(track.crop_transforms).all() and np.isfinite(track.rotations).all()

    for kwargs in ({"max_gap_frames": 1}, {"gap_policy": "passthrough"}):
        passed = track_faces(frames, fps=25, **kwargs)
        assert len(passed) == 10
        assert passed.usable.tolist() == [True] * 3 + [False] * 2 + [True] * 5
        assert any("frames 3-4" in n and "passed through" in n for n in passed.notes)
        assert np.isfinite(passed.landmarks).all()


def _covered(frames: np.ndarray, where: slice) -> np.ndarray:
    """A textured object (the cat photo) in front of the lower face of the drifting astronaut."""
    out = frames.copy()
    cat = cv2.resize(skimage.data.chelsea(), (110, 70), interpolation=cv2.INTER_AREA)
    out[where, 118:188, 168:278] = cat  # the face spans x 178-270, y 71-177; the mouth is at (223, 146)
    return out


@pytest.mark.parametrize(
    "change",
    ["black frames", "grey card", "cut to another shot and back", "object in front of the face"],
)
def test_frames_whose_picture_changed_are_never_filled_in(astronaut, monkeypatch, change):
    """A short run without a face is filled in only when it is a tracker dropout within one shot."""
    frames = _video(astronaut, 10)
    if change == "black frames":
        frames[3:5] = 0
    elif change == "grey card":
        frames[3:5] = 128
    elif change == "cut to another shot and back":
        frames[3:5] = cv2.resize(skimage.data.coffee(), (512, 512), interpolation=cv2.INTER_AREA)
    else:
        frames = _covered(frames, slice(3, 5))
        miss_faces(monkeypatch, {3, 4})  # the detector might still see part of it: make it miss
    track = track_faces(frames, fps=25, max_gap_frames=3)
    assert not track.detected[3:5].any()
    assert track.usable.tolist() == [True] * 3 + [False] * 2 + [True] * 5, track.notes
    assert any("frames 3-4" in n and "passed through untouched" in n and "picture changed" in n for n in track.notes)


def test_a_still_with_dropouts_is_filled_in_everywhere(astronaut, monkeypatch):
    """A still (the same picture in every frame): every missed frame, at the ends too, is a dropout."""
    frames = np.stack([astronaut] * 8)
    miss_faces(monkeypatch, {0, 3, 4, 7})
    track = track_faces(frames, fps=25)
    assert track.detected.tolist() == [False, True, True, False, False, True, True, False]
    assert track.usable.all(), track.notes
    np.testing.assert_allclose(track.landmarks[0], track.landmarks[1])
    np.testing.assert_allclose(track.landmarks[7], track.landmarks[6])


def test_a_cut_inside_a_gap_is_not_bridged(astronaut, monkeypatch):
    """Missed frames on both sides of a cut: the faces before and after belong to different shots."""
    other = np.ascontiguousarray(astronaut[:, ::-1])  # another shot: the face 64 px away, the room mirrored
    frames = np.concatenate([_video(astronaut, 5), _video(other, 5)])
    miss_faces(monkeypatch, {4, 5})
    track = track_faces(frames, fps=25, max_gap_frames=3)
    assert not track.usable[4:6].any(), track.notes
    assert any("frames 4-5" in n and "a cut between frames 3 and 6" in n for n in track.notes), track.notes


def test_gap_at_the_start_holds_the_first_face(astronaut, monkeypatch):
    frames = _video(astronaut, 6)
    miss_faces(monkeypatch, {0, 1})
    track = track_faces(frames, fps=30)
    assert track.detected.tolist() == [False, False, True, True, True, True] and track.usable.all()
    np.testing.assert_allclose(track.landmarks[0], track.landmarks[2])
    frames[:2] = 0  # black frames at the start: nothing to hold
    track = track_faces(frames, fps=30)
    assert track.usable.tolist() == [False, False, True, True, True, True]


def test_no_face_at_all_is_a_clear_error():
    frames = np.full((4, 240, 320, 3), 0.5, np.float32)
    with pytest.raises(LipSyncInputError, match=r"^video: no face found in any of its 4 frames"):
        track_faces(frames, fps=25, input_name="video")


def test_bad_inputs_are_clear_errors(astronaut):
    with pytest.raises(LipSyncInputError, match="fps"):
        track_faces(astronaut[None], fps=0)
    with pytest.raises(LipSyncInputError, match="face_choice"):
        track_faces(astronaut[None], fps=25, face_choice="tallest")
    with pytest.raises(LipSyncInputError, match="insightface"):
        track_faces(astronaut[None], fps=25, face_choice="identity")
    with pytest.raises(LipSyncInputError, match=r"frames: expected images shaped \(T, H, W, 3\)"):
        track_faces(np.zeros((5, 64, 64)), fps=25)
    with pytest.raises(LipSyncInputError, match="backend"):
        track_faces(astronaut[None], fps=25, backend="dlib")


def test_insightface_missing_gives_the_fix(astronaut, tmp_path):
    with pytest.raises(LipSyncInputError) as err:
        track_faces(astronaut[None], fps=25, backend="insightface", insightface_root=tmp_path)
    msg = str(err.value)
    assert "insightface" in msg and ("pip install insightface" in msg or "buffalo_l" in msg)
    assert "\n" not in msg


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None, reason="the mediapipe package is not installed")
def test_tasks_backend_without_its_model_file_gives_the_fix(astronaut, tmp_path):
    with pytest.raises(LipSyncInputError, match="face_landmarker.task"):
        track_faces(
            astronaut[None], fps=25, backend="mediapipe", face_landmarker_path=tmp_path / "face_landmarker.task"
        )


def test_frame_count_in_equals_out_for_every_input_form(astronaut):
    frames = _video(astronaut, 5)
    for form in (frames, frames.astype(np.float32) / 255.0, torch.from_numpy(frames.astype(np.float32) / 255.0)):
        track = track_faces(form, fps=29.97)
        assert len(track) == 5 and track.frame_size == (512, 512) and track.fps == 29.97
        assert track.crop_transforms.shape == (5, 2, 3) and track.rotations.shape == (5, 3, 3)


def test_streaming_equals_one_batch(astronaut):
    frames = _video(astronaut, 9)
    frames[4] = 0
    whole = track_faces(frames, fps=25)
    with FaceTracker(fps=25) as tracker:
        for start in range(0, 9, 2):
            tracker.feed(frames[start : start + 2])
        streamed = tracker.finish()
    np.testing.assert_array_equal(streamed.detected, whole.detected)
    np.testing.assert_allclose(streamed.landmarks, whole.landmarks, atol=1e-4)
    np.testing.assert_allclose(streamed.crop_transforms, whole.crop_transforms, atol=1e-4)
    with FaceTracker(fps=25) as tracker:
        tracker.feed(frames[:2])
        with pytest.raises(LipSyncInputError, match="frame size changed"):
            tracker.feed(frames[:2, :256])


def test_face_choice_by_size_and_position(astronaut):
    small = cv2.resize(astronaut, (320, 320), interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 1024, 3), 200, np.uint8)
    canvas[:, 512:] = astronaut  # large face on the right
    canvas[:320, 60:380] = small  # smaller face on the left
    frames = np.stack([canvas] * 2)
    largest = track_faces(frames, fps=25, face_choice="largest")
    leftmost = track_faces(frames, fps=25, face_choice="leftmost")
    rightmost = track_faces(frames, fps=25, face_choice="rightmost")
    assert largest.detected.all() and leftmost.detected.all() and rightmost.detected.all()
    assert largest.landmarks[:, :, 0].mean() > 512 and rightmost.landmarks[:, :, 0].mean() > 512
    assert leftmost.landmarks[:, :, 0].mean() < 400
    width = np.ptp(largest.landmarks[0, :, 0]) / np.ptp(leftmost.landmarks[0, :, 0])
    assert width == pytest.approx(512 / 320, rel=0.1)


def test_small_faces_are_found(astronaut):
    """A face the mesh's short-range detector misses (IOD ~25 px) is found by the full-range fallback."""
    m = cv2.getRotationMatrix2D((256, 256), 0, 0.6)
    m[:, 2] += (60, 40)
    img = cv2.warpAffine(astronaut, m, (512, 512), flags=cv2.INTER_AREA, borderValue=(90, 90, 90))
    track = track_faces(img[None], fps=25)
    assert track.detected.all()
    ref = track_faces(astronaut[None], fps=25)
    expected = ref.landmarks[0, :, :2] @ m[:, :2].T + m[:, 2]
    assert np.abs(track.landmarks[0, :, :2] - expected).mean() < 2.0


def test_smoothing_removes_jitter_without_lag():
    rng = np.random.default_rng(0)
    t = np.arange(200) / 25
    truth = np.stack([np.sin(2 * np.pi * 0.3 * t), 0.5 * t], axis=1)  # slow head motion
    noisy = truth + rng.normal(0, 0.05, truth.shape)
    cfg = OneEuroConfig()
    causal, zero_phase = one_euro(noisy, 25, cfg), one_euro_zero_phase(noisy, 25, cfg)
    raw_err = np.abs(noisy - truth)[10:-10].mean()
    assert np.abs(zero_phase - truth)[10:-10].mean() < 0.5 * raw_err
    # The zero-phase version has no systematic lag on the ramp; the causal one trails behind.
    assert abs((zero_phase - truth)[10:-10, 1].mean()) < 0.2 * abs((causal - truth)[10:-10, 1].mean())


def test_tracked_crops_jitter_less_when_smoothed(astronaut):
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(20):  # a still head, with sub-pixel camera shake
        m = np.float32([[1, 0, rng.normal(0, 0.7)], [0, 1, rng.normal(0, 0.7)]])
        frames.append(cv2.warpAffine(astronaut, m, (512, 512), borderMode=cv2.BORDER_REFLECT))
    frames = np.stack(frames)
    raw = track_faces(frames, fps=25, smoothing=None)
    smooth = track_faces(frames, fps=25)

    def jitter(track):
        return np.abs(np.diff(track.crop_transforms[:, :, 2], axis=0)).mean()

    assert jitter(smooth) < 0.6 * jitter(raw)


def test_backend_mediapipe_without_the_package_runs_the_torch_port(astronaut, monkeypatch):
    """Workflows saved with backend 'mediapipe' keep working where the package is not installed."""
    import lipsync_core.face.tracking as tracking

    monkeypatch.setattr(tracking, "has_legacy_face_mesh", lambda: False)
    track = track_faces(astronaut[None], fps=25, backend="mediapipe")
    assert track.backend == "torch" and track.detected.all()
    assert any("mediapipe package is not installed" in note for note in track.notes)
    default = track_faces(astronaut[None], fps=25)
    np.testing.assert_array_equal(track.landmarks, default.landmarks)


def test_the_jobs_device_places_the_torch_face_mesh(monkeypatch):
    """--device cpu (and the ComfyUI device) reach the face mesh: it no longer picks CUDA on its own."""
    from lipsync_core import cli
    from lipsync_core.face import backends
    from lipsync_core.types import tracker_options

    assert "device" not in tracker_options("interpolate", 0.5, 25.0)
    args = cli.build_parser().parse_args(["run", "--video", "v.mp4", "--audio", "a.wav", "--out", "o.mp4",
                                          "--device", "cpu"])
    options = cli._job_options(args, 25.0).tracker_options
    assert options["device"] == "cpu" and options["max_gap_frames"] == 12
    monkeypatch.setattr(backends, "default_device", lambda: torch.device("meta"))  # as if CUDA were the default
    tracker = FaceTracker(25.0, **options)
    assert tracker._backend._mesh.device == torch.device("cpu")
    tracker.close()
