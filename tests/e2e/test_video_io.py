"""The video plumbing our nodes plug into, run on the host: frame count, fps and audio survive.

Core (LoadVideo -> GetVideoComponents -> CreateVideo -> SaveVideo) and VideoHelperSuite
(VHS_LoadVideoPath -> VHS_VideoInfo.loaded_fps -> VHS_VideoCombine, with VHS's lazy AUDIO Mapping)
at a non-25 fps, fps always taken from the graph. StyleLipSync nodes go between these ends; these
runs fix what the ends do, and test_fps_sources_match_our_fps_helper ties them to nodes/fps.py.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from media import make_test_video, probe

FRAMES, FPS = 30, 12.5


@pytest.fixture
def input_video(comfy_path, tmp_path):
    """A short mp4 (12.5 fps, AAC tone) in the host's input folder; removed afterwards."""
    name = f"stylelipsync-e2e-{int(time.time() * 1000)}.mp4"
    src = make_test_video(tmp_path / name, frames=FRAMES, fps=FPS)
    dest = comfy_path / "input" / name
    shutil.copy(src, dest)
    yield dest, probe(src)
    dest.unlink(missing_ok=True)


def _saved_files(entry: dict) -> list[dict]:
    return [
        item
        for node_out in entry["outputs"].values()
        for items in node_out.values()
        if isinstance(items, list)
        for item in items
        if isinstance(item, dict) and "filename" in item
    ]


def _check(comfy_host, entry, source, tmp_path) -> dict:
    [item] = _saved_files(entry)
    got = probe(comfy_host.fetch_output(item, tmp_path / ("out-" + Path(item["filename"]).name)))
    assert got["frames"] == source["frames"] == FRAMES
    assert got["fps"] == pytest.approx(FPS, abs=1e-3)
    assert got["audio_seconds"] == pytest.approx(source["audio_seconds"], abs=1.0 / FPS), (got, source)
    return got


def test_core_video_nodes_keep_frames_fps_and_audio(comfy_host, input_video, tmp_path):
    path, source = input_video
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": path.name}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "CreateVideo", "inputs": {"images": ["2", 0], "audio": ["2", 1], "fps": ["2", 2]}},
        "4": {
            "class_type": "SaveVideo",
            "inputs": {"video": ["3", 0], "filename_prefix": "stylelipsync-e2e/core", "format": "mp4", "codec": "h264"},
        },
    }
    comfy_host.object_info(refresh=True)
    _check(comfy_host, comfy_host.run(prompt, timeout=300), source, tmp_path)


def test_vhs_nodes_keep_frames_fps_and_lazy_audio(comfy_host, input_video, tmp_path):
    if "VHS_VideoCombine" not in comfy_host.object_info():
        pytest.skip("VideoHelperSuite is not installed on this host")
    path, source = input_video
    load = {
        "video": str(path), "force_rate": 0, "custom_width": 0, "custom_height": 0,
        "frame_load_cap": 0, "skip_first_frames": 0, "select_every_nth": 1,
    }  # fmt: skip
    combine = {
        "images": ["1", 0], "audio": ["1", 2], "frame_rate": ["2", 5], "loop_count": 0,
        "filename_prefix": "stylelipsync-e2e/vhs", "format": "video/h264-mp4", "pingpong": False,
        "save_output": True, "pix_fmt": "yuv420p", "crf": 19, "save_metadata": True, "trim_to_audio": False,
    }  # fmt: skip
    prompt = {
        "1": {"class_type": "VHS_LoadVideoPath", "inputs": load},
        "2": {"class_type": "VHS_VideoInfo", "inputs": {"video_info": ["1", 3]}},  # output 5: loaded_fps
        "3": {"class_type": "VHS_VideoCombine", "inputs": combine},
    }
    _check(comfy_host, comfy_host.run(prompt, timeout=300), source, tmp_path)


def test_fps_sources_match_our_fps_helper(comfy_host, input_video):
    """What VHS's video_info and core's GetVideoComponents really carry is what nodes/fps.py reads."""
    from StyleLipSync.nodes.sockets import fps_of

    path, _ = input_video
    vhs_info = {"source_fps": FPS, "loaded_fps": FPS}  # the keys VHS_VideoInfo's outputs 0 and 5 read
    assert fps_of(vhs_info) == FPS
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": path.name}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
    }
    entry = comfy_host.run(prompt, timeout=300)
    [text] = entry["outputs"]["3"]["text"]
    assert fps_of(float(text)) == pytest.approx(FPS)
