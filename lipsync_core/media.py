"""Streaming video files in and out with PyAV (which carries its own ffmpeg).

Reading yields frames in chunks so a 10-minute video needs no more memory than
a chunk; writing muxes the new audio in and only ever leaves a complete file:
it writes ``<name>.partial.<ext>`` and renames it when closed cleanly, and
removes it when anything fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .types import LipSyncInputError


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    frame_count: int  # as stored in the container; may be an estimate for some formats
    width: int
    height: int
    duration: float  # seconds
    has_audio: bool


def probe_video(path: str | os.PathLike, what: str = "video") -> VideoInfo:
    """Size, fps and length of a video file, or a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise LipSyncInputError(f"{what}: no such file {path}; check the path.")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise LipSyncInputError(f"{what}: {path} has no video stream; give a video file.")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise LipSyncInputError(f"{what}: {path} has no frame rate; re-encode it (e.g. ffmpeg -r 25).")
            fps = float(rate)
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = 0.0
            frames = int(stream.frames) or int(round(duration * fps))
            return VideoInfo(path, fps, frames, stream.codec_context.width, stream.codec_context.height, duration,
                             bool(container.streams.audio))
    except av.FFmpegError as exc:
        raise LipSyncInputError(f"{what}: {path} is not a readable video ({exc}); check the file.") from exc


def iter_video_frames(path: str | os.PathLike, chunk_size: int = 16, what: str = "video") -> Iterator[np.ndarray]:
    """Decode RGB frames as uint8 arrays [n <= chunk_size, H, W, 3], in order."""
    path = Path(path)
    probe_video(path, what)
    buffer: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                buffer.append(frame.to_ndarray(format="rgb24"))
                if len(buffer) == chunk_size:
                    yield np.stack(buffer)
                    buffer = []
    except av.FFmpegError as exc:
        raise LipSyncInputError(f"{what}: {path} could not be decoded ({exc}); check the file.") from exc
    if buffer:
        yield np.stack(buffer)


def read_video(path: str | os.PathLike, what: str = "video") -> tuple[np.ndarray, float]:
    """All frames [T, H, W, 3] uint8 and the fps: for short clips (tests, references)."""
    info = probe_video(path, what)
    chunks = list(iter_video_frames(path, 64, what))
    if not chunks:
        raise LipSyncInputError(f"{what}: {path} has no decodable frames; check the file.")
    return np.concatenate(chunks), info.fps


def _fps_fraction(fps: float) -> Fraction:
    """23.976 -> 24000/1001 etc.: NTSC rates exactly, others to the nearest 1/1000."""
    for base in (24, 30, 60, 120):
        if abs(fps - base * 1000 / 1001) < 1e-3:
            return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(1000)


class VideoWriter:
    """Write RGB frames (and optionally audio) to an mp4, streaming, never leaving a partial file.

    Use as a context manager; ``write(frames)`` takes [n, H, W, 3] uint8 or float 0..1.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        crf: int = 18,
    ) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.audio = audio
        self.sample_rate = sample_rate
        self.crf = crf
        self.partial = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self._container = None
        self._stream = None
        self._audio_stream = None
        self.frames_written = 0

    def __enter__(self) -> VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.partial), mode="w")
        return self

    def _open_streams(self, height: int, width: int) -> None:
        stream = self._container.add_stream("libx264", rate=_fps_fraction(self.fps))
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        self._stream = stream
        if self.audio is not None and self.sample_rate:
            wave = np.asarray(self.audio, dtype=np.float32)
            self._wave = np.ascontiguousarray(wave[None, :] if wave.ndim == 1 else wave)  # [channels, samples]
            self._audio_stream = self._container.add_stream("aac", rate=int(self.sample_rate))
            self._audio_stream.layout = "mono" if self._wave.shape[0] == 1 else "stereo"
            self._audio_pos = 0

    def write(self, frames: np.ndarray) -> None:
        if frames.dtype != np.uint8:
            frames = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if self._stream is None:
            self._open_streams(frames.shape[1], frames.shape[2])
        h, w = self._stream.height, self._stream.width
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="rgb24")
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            self.frames_written += 1
        self._write_audio(until=int(self.frames_written / self.fps * self.sample_rate) if self.sample_rate else 0)

    def _write_audio(self, until: int | None = None) -> None:
        """Encode audio up to sample ``until`` (None: all), interleaved with the video written so far."""
        if self._audio_stream is None:
            return
        end = self._wave.shape[1] if until is None else min(until, self._wave.shape[1])
        block = 1024
        while self._audio_pos < end:
            piece = np.ascontiguousarray(self._wave[:, self._audio_pos : min(self._audio_pos + block, end)])
            frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=self._audio_stream.layout)
            frame.sample_rate = int(self.sample_rate)
            frame.pts = self._audio_pos
            for packet in self._audio_stream.encode(frame):
                self._container.mux(packet)
            self._audio_pos += piece.shape[1]
        if until is None:
            for packet in self._audio_stream.encode(None):
                self._container.mux(packet)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self._stream is None or self.frames_written == 0:
                    raise LipSyncInputError(f"output: no frames were written to {self.path}.")
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._write_audio()
            self._container.close()
        except BaseException:
            self._container.close()
            self.partial.unlink(missing_ok=True)
            raise
        if exc_type is not None:
            self.partial.unlink(missing_ok=True)
            return
        os.replace(self.partial, self.path)
