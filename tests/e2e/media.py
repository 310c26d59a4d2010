"""Small test videos with audio, and measurements of the videos a host wrote (PyAV, no ffmpeg CLI)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_test_video(
    path: Path,
    frames: int = 30,
    fps: Fraction | float = Fraction(25, 2),
    size: tuple[int, int] = (96, 64),
    sample_rate: int = 16000,
    audio_seconds: float | None = None,
) -> Path:
    """An H.264/AAC mp4 of a moving gradient and a 220 Hz tone (audio as long as the video by default)."""
    fps = Fraction(fps).limit_denominator(1001)
    width, height = size
    audio_seconds = frames / float(fps) if audio_seconds is None else audio_seconds
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=sample_rate, layout="mono")
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(frames):
            rgb = np.stack([(xx * 2 + i * 8) % 256, (yy * 3 + i * 5) % 256, np.full_like(xx, (i * 20) % 256)], axis=-1)
            for packet in video.encode(av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        n = int(round(audio_seconds * sample_rate))
        tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / sample_rate)).astype(np.float32)
        frame_size = audio.codec_context.frame_size or 1024
        for start in range(0, n, frame_size):
            chunk = tone[start : start + frame_size][None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return path


def probe(path: Path) -> dict[str, float]:
    """Decoded facts: video frame count and fps, audio duration (decoded samples / rate)."""
    facts: dict[str, float] = {"frames": 0, "fps": 0.0, "audio_seconds": 0.0, "audio_rate": 0}
    with av.open(str(path)) as container:
        if container.streams.video:
            stream = container.streams.video[0]
            facts["fps"] = float(stream.average_rate or stream.guessed_rate or 0)
            facts["frames"] = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        if container.streams.audio:
            samples, rate = 0, container.streams.audio[0].rate
            for frame in container.decode(audio=0):
                samples += frame.samples
            facts["audio_seconds"], facts["audio_rate"] = samples / rate, rate
    return facts
