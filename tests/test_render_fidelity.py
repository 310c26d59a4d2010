"""The fidelity benchmark's measures, and what the shipped renderer must do with the picture (issue 15)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from lipsync_core.cli import DEMO_MODELS
from lipsync_core.media import read_video
from lipsync_core.models.bundle import LipSyncModels
from lipsync_core.render.frames import FrameRenderer
from lipsync_core.render.settings import RenderSettings
from lipsync_core.train.fidelity import (
    ROWS,
    FidelityOptions,
    closed_mouth_scene,
    fidelity,
    frame_figures,
    markdown,
    opening_figures,
)

DEMO = Path(__file__).resolve().parents[1] / "lipsync_core" / "assets" / "demo"


@pytest.fixture(scope="module")
def models() -> LipSyncModels:
    return LipSyncModels.from_folder(DEMO_MODELS)


@pytest.fixture(scope="module")
def demo_clip() -> tuple[np.ndarray, float, np.ndarray]:
    frames, fps = read_video(DEMO / "video.mp4")
    return frames, fps, np.load(DEMO / "video.truth.npz")["landmarks"]


def test_frame_figures_see_blur_and_untouched_regions(demo_clip):
    frames, _, truth = demo_clip
    frames, truth = frames[:4], truth[:4]
    masks = np.zeros(frames.shape[:3], np.float32)
    same = frame_figures(frames, frames, masks, truth)
    assert same["sharpness_mouth"] == pytest.approx(1.0) and same["sharpness_nose"] == pytest.approx(1.0)
    assert same["psnr_mouth"] >= 99 and same["psnr_repainted"] is None and same["repainted_area_iod2"] == 0
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames])
    soft = frame_figures(blurred, frames, masks + 1, truth)
    assert soft["sharpness_mouth"] < 0.5 and soft["sharpness_nose"] < 0.5 and soft["psnr_mouth"] < 40
    assert soft["repainted_area_iod2"] > 10  # the whole frame, in IOD^2


def test_opening_figures():
    t = np.sin(np.linspace(0, 6, 50)) + 1
    assert opening_figures(t, t) == pytest.approx({"opening_corr": 1.0, "opening_range": 1.0})
    half = opening_figures(0.5 * t + 3, t)
    assert half["opening_corr"] == pytest.approx(1.0) and half["opening_range"] == pytest.approx(0.5)
    assert opening_figures(-t, t)["opening_corr"] == pytest.approx(-1.0)


def test_fidelity_rows_on_the_demo_clip(models, tmp_path):
    speaker = tmp_path / "s0000"
    speaker.mkdir()
    for suffix in (".mp4", ".wav", ".truth.npz"):
        shutil.copyfile(DEMO / f"video{suffix}", speaker / f"clip0000{suffix}")
    report = fidelity(models, tmp_path, FidelityOptions(max_frames=16, steps=2))
    assert report["clips"] == 1 and report["frames"] == 16 and list(report["rows"]) == list(ROWS)
    for row, figures in report["rows"].items():
        assert figures["sharpness_nose"] >= 0.95, row  # the nose is never repainted
        assert 0 < figures["repainted_area_iod2"] < 2.5, row  # mouth and chin, not the lower half of the face
        assert np.isfinite(figures["lip_lmd_retracked"]) and np.isfinite(figures["psnr_mouth"]), row
    resample = report["rows"]["resample"]
    assert resample["psnr_mouth"] > report["rows"]["whole job"]["psnr_mouth"]  # the ceiling is above the job
    assert "stage1_opening_corr" in report["rows"]["whole job"]
    for row in ("renderer", "whole job"):  # how well stage 2 follows the params that drive it
        assert -1 <= report["rows"][row]["drive_opening_corr"] <= 1 and report["rows"][row]["drive_opening_range"] > 0
    assert "drive_opening_corr" not in report["rows"]["vae"]
    assert "| whole job (predicted motion) |" in markdown(report)


def test_closed_mouth_motion_closes_the_mouth_even_with_open_references(models, demo_clip):
    """The copy path must not become a shortcut: the motion, not the reference, decides the mouth."""
    frames, fps, _ = demo_clip
    scene = closed_mouth_scene(models, frames, fps)  # a closed-mouth motion on the clip's 12 widest-open frames
    widest = scene.reference_frames(open_mouth=True)  # the references: only the widest-open frames of the clip
    renderer = FrameRenderer(models, models.codec(), scene.analysis, scene.motion, np.arange(len(frames)),
                             scene.crops(widest), RenderSettings(),
                             reference_openness=scene.analysis.openness[widest])
    out, _ = renderer.render(frames[scene.targets], scene.targets)
    share, detected = scene.share_closed(models, out)
    assert detected.all()
    # The output mouth closes most of the way from the input's opening towards the person's closed mouth.
    assert share > 0.65, (share, scene.closed_level, scene.open_level)
