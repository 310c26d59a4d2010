"""Video files: streaming read, write with muxed audio, no partial output on failure."""

from __future__ import annotations

import av
import numpy as np
import pytest

from lipsync_core.media import VideoWriter, iter_video_frames, probe_video, read_video
from lipsync_core.types import LipSyncInputError


def _frames(n: int, h: int = 64, w: int = 96) -> np.ndarray:
    t = np.arange(n, dtype=np.float32)[:, None, None, None]
    y = np.linspace(0, 1, h, dtype=np.float32)[None, :, None, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, None, :, None]
    return np.concatenate([np.broadcast_to(x, (n, h, w, 1)), np.broadcast_to(y, (n, h, w, 1)),
                           np.broadcast_to((t / n) % 1.0, (n, h, w, 1))], axis=-1)


@pytest.mark.parametrize("fps", [23.976, 29.97, 50.0])
def test_write_then_read_keeps_frames_fps_and_audio_length(tmp_path, fps):
    frames = _frames(37)
    rate = 44100
    audio = np.sin(np.linspace(0, 400, int(37 / fps * rate))).astype(np.float32) * 0.3
    out = tmp_path / "clip.mp4"
    with VideoWriter(out, fps, audio=np.stack([audio, audio]), sample_rate=rate) as writer:
        writer.write(frames[:20])
        writer.write(frames[20:])
    info = probe_video(out)
    assert abs(info.fps - fps) < 1e-3 and info.has_audio and (info.width, info.height) == (96, 64)
    decoded = np.concatenate(list(iter_video_frames(out, chunk_size=8)))
    assert decoded.shape == (37, 64, 96, 3)
    assert np.abs(decoded.astype(np.float32) / 255 - frames).mean() < 0.02
    with av.open(str(out)) as c:
        stream = c.streams.audio[0]
        seconds = float(stream.duration * stream.time_base)
    assert abs(seconds - 37 / fps) < 0.05
    assert not list(tmp_path.glob("*.partial*"))


def test_failure_leaves_no_file(tmp_path):
    out = tmp_path / "bad.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 25.0) as writer:
            writer.write(_frames(3))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_unreadable_and_missing_files_get_clear_messages(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(LipSyncInputError, match="junk.mp4"):
        read_video(junk)
    with pytest.raises(LipSyncInputError, match="does not exist"):
        probe_video(tmp_path / "missing.mp4")
