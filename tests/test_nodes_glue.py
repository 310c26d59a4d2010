"""Host glue outside ComfyUI: the shared model cache, fps resolution, progress, attention adapter, model info.

The same glue inside a real ComfyUI (folder_paths, ModelPatcher, ProgressBar, interruption, ComfyUI's
attention functions) is checked by tests/e2e/test_host_glue.py.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from node_samples import run
from StyleLipSync.nodes.host import (
    HostedModel,
    Progress,
    adapt_comfy_attention,
    check_interrupted,
    comfy_attention_installed,
)
from StyleLipSync.nodes.models import ModelCache, inspect_weights_file
from StyleLipSync.nodes.sockets import footage, fps_of, resolve_fps

from lipsync_core.types import LipSyncInputError
from lipsync_core.weights import save_tensors


def _write(path, text="x"):
    path.write_text(text)
    return path


def test_cache_loads_each_file_once(tmp_path):
    cache = ModelCache()
    calls = []
    path = _write(tmp_path / "a.bin")

    def loader(p):
        calls.append(p)
        return object()

    first = cache.get(path, loader)
    assert cache.get(str(path), loader) is first  # str or Path, same file
    assert cache.get(tmp_path / "." / "a.bin", loader) is first  # resolved
    assert cache.loads(path) == 1 and len(calls) == 1
    other_kind = cache.get(path, loader, kind="header")
    assert other_kind is not first and cache.loads(path) == 2 and cache.loads(kind="header") == 1
    assert len(cache) == 2


def test_cache_reloads_a_replaced_file_and_drops_the_stale_one(tmp_path):
    cache = ModelCache()
    path = _write(tmp_path / "a.bin", "one")
    first = cache.get(path, lambda p: p.read_text())
    st = path.stat()
    _write(path, "two!")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert cache.get(path, lambda p: p.read_text()) == "two!" != first
    assert cache.loads(path) == 2 and len(cache) == 1
    assert cache.evict(path) == 1 and len(cache) == 0


def test_cache_names_a_missing_file(tmp_path):
    with pytest.raises(LipSyncInputError, match="model: cannot read"):
        ModelCache().get(tmp_path / "nope.safetensors", lambda p: None)


def test_fps_from_every_source():
    assert fps_of(29.97) == 29.97 and fps_of(30) == 30.0 and fps_of(Fraction(30000, 1001)) == pytest.approx(29.97, 1e-3)
    vhs = {"source_fps": 30.0, "loaded_fps": 15.0, "loaded_frame_count": 10}
    assert fps_of(vhs) == 15.0  # the rate of the frames VHS actually gave (select_every_nth=2)
    assert fps_of({"source_fps": 24.0, "loaded_fps": 0}) == 24.0
    video = SimpleNamespace(get_components=lambda: SimpleNamespace(frame_rate=Fraction(25, 1)))
    assert fps_of(video) == 25.0
    for nothing in (None, 0, -3.0, float("nan"), True, "30", {}, object()):
        assert fps_of(nothing) is None
    assert resolve_fps(("fps", 0.0), ("video_info", vhs)) == 15.0
    assert resolve_fps(("fps", 12.5), ("video_info", vhs)) == 12.5
    with pytest.raises(LipSyncInputError, match="fps or video_info: no frame rate"):
        resolve_fps(("fps", 0.0), ("video_info", None))


def test_footage_from_a_video_or_from_images_and_fps():
    """The all-in-one and Personalize nodes read their footage alike: a VIDEO's frames, rate and sound (a connected
    AUDIO over its own, a set fps over its rate), else images at fps or video_info's rate."""
    from comfy_api.latest import InputImpl, Types

    from lipsync_core.media import fps_fraction

    images = torch.rand(3, 8, 8, 4)  # an alpha channel: dropped
    own = {"waveform": torch.zeros(1, 1, 160), "sample_rate": 16000}
    connected = {"waveform": torch.ones(1, 2, 80), "sample_rate": 8000}
    video = InputImpl.VideoFromComponents(Types.VideoComponents(images=images, audio=own, frame_rate=fps_fraction(25)))
    frames, rate, sound = footage(None, 0.0, None, video, None, "the frames")
    assert frames.shape == (3, 8, 8, 3) and torch.equal(torch.from_numpy(frames), images[..., :3])
    assert rate == 25.0 and sound is own
    _, rate, sound = footage(None, 12.5, None, video, connected, "the frames")
    assert rate == 12.5 and sound is connected
    frames, rate, sound = footage(images, 0.0, {"loaded_fps": 15.0}, None, None, "the frames")
    assert frames.shape == (3, 8, 8, 3) and rate == 15.0 and sound is None
    with pytest.raises(LipSyncInputError, match=r"^images: not connected; connect the person's footage \(IMAGE\)"):
        footage(None, 25.0, None, None, connected, "the person's footage")
    with pytest.raises(LipSyncInputError, match="fps or video_info: no frame rate"):
        footage(images, 0.0, None, None, None, "the frames")


def test_fps_of_a_file_video_reads_the_header_without_decoding(tmp_path):
    import av
    import numpy as np

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(30000, 1001))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        out.mux(stream.encode())

    class VideoFromFile:  # the shape of comfy_api's class of that name
        def get_stream_source(self):
            return str(path)

        def get_components(self):
            raise AssertionError("decoded every frame just to read the fps")

    assert fps_of(VideoFromFile()) == pytest.approx(29.97, abs=1e-3)
    assert fps_of(torch.tensor(24.0)) == 24.0


def test_progress_and_interrupt_are_silent_outside_comfyui():
    progress = Progress(3)
    seen = []
    for done in range(1, 4):
        progress.set(done)
        seen.append(progress.current)
    progress.set(8)
    assert seen == [1, 2, 3] and progress.current == 3
    progress.set(4, total=10)
    assert (progress.current, progress.total) == (4, 10)
    check_interrupted()


def test_hosted_model_outside_comfyui():
    module = torch.nn.Linear(4, 2)
    hosted = HostedModel(module, name="lin")
    assert hosted.patcher is None
    ready = hosted.ready()
    assert ready is module and hosted.device == hosted.load_device and hosted.is_loaded()
    assert hosted.size_bytes() == (4 * 2 + 2) * 4


def _comfy_convention_attention(q, k, v, heads, mask=None, skip_reshape=False, skip_output_reshape=False, **kw):
    """ComfyUI's attention_pytorch contract re-stated (the real functions are exercised in tests/e2e)."""
    assert skip_reshape and heads == q.shape[1]
    if mask is not None:
        assert mask.shape == (q.shape[0], heads, q.shape[2], k.shape[2]) and mask.is_floating_point()
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out if skip_output_reshape else out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def _flat_output_attention(q, k, v, heads, mask=None, **kw):
    """A backend that ignores skip_output_reshape (ComfyUI's SDPA batch-limit path does)."""
    return _comfy_convention_attention(q, k, v, heads, mask, skip_reshape=True, skip_output_reshape=False)


@pytest.mark.parametrize("backend", [_comfy_convention_attention, _flat_output_attention])
def test_attention_adapter_matches_sdpa(backend):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 8)
    fn = adapt_comfy_attention(backend)
    torch.testing.assert_close(fn(q, k, v), F.scaled_dot_product_attention(q, k, v))
    keep = torch.rand(2, 1, 5, 7) > 0.3
    keep[..., 0] = True
    torch.testing.assert_close(fn(q, k, v, attn_mask=keep), F.scaled_dot_product_attention(q, k, v, attn_mask=keep))
    bias = torch.randn(5, 7)
    torch.testing.assert_close(fn(q, k, v, attn_mask=bias), F.scaled_dot_product_attention(q, k, v, attn_mask=bias))


def test_attention_install_is_a_no_op_outside_comfyui():
    with comfy_attention_installed() as backend:
        assert backend == "sdpa-default"


def test_model_info_reports_good_and_broken_files(tmp_path):
    good = save_tensors(tmp_path / "motion.safetensors", {"w": torch.ones(16, 8), "b": torch.zeros(8)}, "motion",
                        {"d_model": 256, "heads": 8}, extra={"steps": 10})  # fmt: skip
    info = inspect_weights_file(good)
    assert info["problems"] == [] and info["kind"] == "motion" and info["format_version"] == 1
    assert info["parameters"] == 16 * 8 + 8 and info["tensors"] == 2 and info["config"]["heads"] == 8

    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(good.read_bytes()[:-20])
    assert any("truncated: 20 bytes missing" in p for p in inspect_weights_file(truncated)["problems"])

    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.ones(2)}, str(foreign))
    assert any("not a StyleLipSync" in p for p in inspect_weights_file(foreign)["problems"])

    junk = _write(tmp_path / "junk.safetensors", "definitely not safetensors")
    assert inspect_weights_file(junk)["problems"]

    out = run("StyleLipSyncModelInfo", str(good))
    report, details = out
    assert report.startswith("motion.safetensors: OK") and "136 parameters" in report
    assert json.loads(details)[0]["config"] == {"d_model": 256, "heads": 8}
    assert out.ui["stylelipsync_text"] == [report]
    with pytest.raises(LipSyncInputError, match="model: no such file"):
        run("StyleLipSyncModelInfo", str(tmp_path / "missing.safetensors"))


def test_motion_view_payload_is_bounded_and_faithful():
    import numpy as np
    from StyleLipSync.nodes.views import MOTION_KEY, motion_view_payload

    t, n = 10_000, 300
    opening = np.sin(np.linspace(0, 20, t))
    attention = np.random.default_rng(0).random((t, n))
    attention[:, 7] += 5.0  # one reference frame everyone attends to
    ui = motion_view_payload(29.97, opening, envelope=np.abs(opening), attention=attention)
    [item] = ui[MOTION_KEY]
    assert item["fps"] == 29.97 and len(item["opening"]) == 2000 and len(item["envelope"]) == 2000
    assert abs(item["opening"][0] - opening[:5].mean()) < 1e-4  # bin means, not decimation
    att = item["attention"]
    assert (att["rows"], att["cols"]) == (256, 256) and len(att["values"]) == 256 * 256
    values = np.array(att["values"]).reshape(256, 256)
    assert values.min() == 0.0 and values.max() == 1.0 and values[:, 6].mean() > 0.9  # column 7 of 300 -> bin 6
    assert len(json.dumps(ui)) < 600_000

    small = motion_view_payload(25.0, [0.1, float("nan"), 0.3])[MOTION_KEY][0]
    assert small == {"fps": 25.0, "opening": [0.1, 0.0, 0.3], "envelope": []}
