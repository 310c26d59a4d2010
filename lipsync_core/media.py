"""Streaming video files in and out with PyAV (which carries its own ffmpeg).

Reading yields frames in chunks so a 10-minute video needs no more memory than
a chunk; writing muxes the new audio in and only ever leaves a complete file:
it writes a uniquely named ``<name>.partial-XXXX.<ext>`` beside the target and
renames it when closed cleanly, and removes it when anything fails.
:func:`check_output_path` refuses, before any work, an output that is one of the
inputs or that cannot be written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
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
    frames_exact: bool = False  # frame_count read from the container's index (mp4, mov), not estimated


def probe_video(path: str | os.PathLike, what: str = "video") -> VideoInfo:
    """Size, fps and length of a video file, or a one-line error naming it."""
    path = Path(path)
    if path.is_dir():
        raise LipSyncInputError(f"{what}: {path} is a folder; name a video file in it.")
    if not path.is_file():
        raise LipSyncInputError(f"{what}: {path} does not exist; check the path.")
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
            indexed = bool(stream.frames) or "mp4" in container.format.name.split(",")
            frames = int(stream.frames) or int(round(duration * fps))
            return VideoInfo(path, fps, frames, stream.codec_context.width, stream.codec_context.height, duration,
                             bool(container.streams.audio), indexed)
    except av.FFmpegError as exc:
        raise LipSyncInputError(
            f"{what}: {path} is not a readable video ({_short(exc)}); give a video file (mp4, mov, mkv, webm) "
            "or re-encode it with ffmpeg."
        ) from exc


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


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
        raise LipSyncInputError(
            f"{what}: {path} could not be decoded ({_short(exc)}); it may be truncated, re-encode or re-copy it."
        ) from exc
    if buffer:
        yield np.stack(buffer)


def read_video(path: str | os.PathLike, what: str = "video") -> tuple[np.ndarray, float]:
    """All frames [T, H, W, 3] uint8 and the fps: for short clips (tests, references)."""
    info = probe_video(path, what)
    chunks = list(iter_video_frames(path, 64, what))
    if not chunks:
        raise LipSyncInputError(f"{what}: {path} has no decodable frames; it may be empty or truncated, re-encode it.")
    return np.concatenate(chunks), info.fps


def fps_fraction(fps: float) -> Fraction:
    """23.976 -> 24000/1001 etc.: NTSC rates exactly, others to the nearest 1/1000."""
    for base in (24, 30, 60, 120):
        if abs(fps - base * 1000 / 1001) < 1e-3:
            return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(1000)


# Containers the output may be written in (all take H.264 video and AAC audio).
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v")


def _same_file(a: Path, b: Path) -> bool:
    """True when two paths name one file: the same path, a symlink to it, or a hard link."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _existing_ancestor(folder: Path) -> Path:
    """The folder itself, or its nearest parent that exists (where a missing folder would be made)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: tried for real (permission bits, ACLs, read-only
    disks and special file systems all answer alike), and removed at once."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".stylelipsync-write-test-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def check_output_path(
    out: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None], what: str = "out"
) -> Path:
    """Refuse, before any work, an output file that would destroy an input or cannot be written.

    ``inputs`` maps each input's name (e.g. "video") to its path. The output may not be any of
    them (same path, symlink or hard link), may not be a folder, must have a video extension, and
    its folder must exist and be writable or be creatable. Nothing is left behind (the folder is
    probed with a hidden file, removed at once; a missing folder is made only when writing starts).
    """
    out = Path(out)
    for name, path in inputs.items():
        if path is not None and (_same_file(out, Path(path)) or out.absolute() == Path(path).absolute()):
            raise LipSyncInputError(
                f"{what}: {out} is the {name} input file; writing there would destroy it, so name a new "
                f"file (e.g. {out.with_name(out.stem + '_synced.mp4')})."
            )
    if out.is_dir():
        raise LipSyncInputError(
            f"{what}: {out} is a folder; name the output file inside it (e.g. {out / 'synced.mp4'})."
        )
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise LipSyncInputError(
            f"{what}: {out} ends in '{out.suffix}', but the output is a video; name it "
            f"{' or '.join(VIDEO_SUFFIXES[:3])} (e.g. {out.with_suffix('.mp4')})."
        )
    folder = out.parent if str(out.parent) else Path(".")
    base = _existing_ancestor(folder.absolute())
    if not base.is_dir():
        raise LipSyncInputError(
            f"{what}: {base} is a file, so the folder {folder} cannot be made; choose another output folder."
        )
    if not _writable(base):
        where = f"write in {folder}" if base == folder.absolute() else f"create {folder} in {base}"
        raise LipSyncInputError(
            f"{what}: cannot {where} (permission denied or a read-only disk); write the output to a folder "
            "you can write to."
        )
    if out.exists() and not os.access(out, os.W_OK):
        raise LipSyncInputError(f"{what}: {out} exists and is read-only; name another file or make it writable.")
    return out


class VideoWriter:
    """Write RGB frames (and optionally audio) to an mp4, streaming, never leaving a partial file.

    Use as a context manager; ``write(frames)`` takes [n, H, W, 3] uint8 or float 0..1. The frame
    size is kept exactly: even sizes are H.264 4:2:0 (yuv420p, what every player reads), odd sizes
    H.264 4:4:4 (yuv420p cannot hold them), which ``notes`` then says.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        crf: int = 18,
        what: str = "out",
    ) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.audio = audio
        self.sample_rate = sample_rate
        self.crf = crf
        self.what = what
        self.partial: Path | None = None
        self.notes: list[str] = []
        self._container = None
        self._stream = None
        self._audio_stream = None
        self.frames_written = 0

    def _fail(self, doing: str, exc: BaseException) -> LipSyncInputError:
        text = str(exc).strip()
        reason = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else type(exc).__name__)
        return LipSyncInputError(
            f"{self.what}: could not {doing} ({reason}); check the folder is writable and has free space, "
            "or write the output elsewhere."
        )

    def __enter__(self) -> VideoWriter:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=folder, prefix=f"{self.path.stem}.partial-",
                                        suffix=self.path.suffix or ".mp4")  # fmt: skip
            os.close(fd)
            os.chmod(name, 0o666 & ~_umask())  # mkstemp makes it private; the output gets the usual mode
        except OSError as exc:
            raise self._fail(f"write in {folder}", exc) from exc
        self.partial = Path(name)
        try:
            self._container = av.open(str(self.partial), mode="w")
        except (av.FFmpegError, OSError, ValueError) as exc:
            self.partial.unlink(missing_ok=True)
            raise self._fail(f"open {self.path} for writing", exc) from exc
        return self

    def _open_streams(self, height: int, width: int) -> None:
        stream = self._container.add_stream("libx264", rate=fps_fraction(self.fps))
        stream.width, stream.height = width, height
        if width % 2 or height % 2:
            stream.pix_fmt = "yuv444p"
            self.notes.append(
                f"{width}x{height} is an odd frame size: written as H.264 4:4:4 (yuv444p) to keep every pixel; "
                "some players (web browsers, QuickTime) only play even sizes"
            )
        else:
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
        try:
            if self._stream is None:
                self._open_streams(frames.shape[1], frames.shape[2])
            elif (frames.shape[1], frames.shape[2]) != (self._stream.height, self._stream.width):
                raise LipSyncInputError(
                    f"{self.what}: frames of {frames.shape[2]}x{frames.shape[1]} after "
                    f"{self._stream.width}x{self._stream.height}; every frame of a video must have one size."
                )
            for image in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
                self.frames_written += 1
            self._write_audio(until=int(self.frames_written / self.fps * self.sample_rate) if self.sample_rate else 0)
        except (av.FFmpegError, OSError) as exc:
            raise self._fail(f"write {self.path}", exc) from exc

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

    def _discard(self) -> None:
        """Close the container and remove the unfinished file (never raises over the original error)."""
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - the file is being thrown away
            pass
        self.partial.unlink(missing_ok=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            if self._stream is None or self.frames_written == 0:
                raise LipSyncInputError(f"{self.what}: no frames were written to {self.path}.")
            try:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._write_audio()
                self._container.close()
            except (av.FFmpegError, OSError) as error:
                raise self._fail(f"write {self.path}", error) from error
            try:
                os.replace(self.partial, self.path)
            except OSError as error:
                raise self._fail(f"replace {self.path} with the finished video", error) from error
        except BaseException:
            self._discard()
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------- frame sources


class FrameSource:
    """Random access by index to a video's frames, in chunks; arrays and files alike."""

    fps: float
    num_frames: int

    def iter_chunks(self, size: int) -> Iterator[np.ndarray]:
        for start in range(0, self.num_frames, size):
            yield self.get(np.arange(start, min(start + size, self.num_frames)))

    def get(self, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self, what: str) -> str:
        """How errors name this source: the input's name (and its file, if it has one)."""
        return what


class ArrayFrames(FrameSource):
    """Frames already in memory (ComfyUI IMAGE batches): [T, H, W, 3] float 0..1 or uint8.

    ``name``: how errors name them (a node's input, e.g. "images"); default the pipeline's own word.
    """

    def __init__(self, frames, fps: float, name: str | None = None) -> None:
        if hasattr(frames, "detach"):  # a torch tensor (ComfyUI IMAGE); torch itself is not imported here
            frames = frames.detach().cpu().numpy()
        self.frames = frames
        self.fps = float(fps)
        self.num_frames = len(frames)
        self.name = name

    def describe(self, what: str) -> str:
        return self.name or what

    def get(self, indices: np.ndarray) -> np.ndarray:
        return self.frames[np.asarray(indices)]


class VideoFileFrames(FrameSource):
    """Frames decoded from a file on demand: forward reads stream, a backward jump re-reads.

    Only the frames of the requested range are held, so memory is bounded by the chunk.
    """

    REREAD_WINDOW = 64  # frames; a requested range up to this long is kept for a re-read

    def __init__(self, path: str | os.PathLike, what: str = "video") -> None:
        self.path = Path(path)
        self.what = what
        info = probe_video(self.path, what)
        self.fps = info.fps
        # The container's count can be an estimate: tracking, which decodes every frame, sets the exact one.
        self.num_frames = info.frame_count
        self._reader: Iterator[np.ndarray] | None = None
        self._pos = 0  # index of the next frame the reader yields
        self._pending: list[np.ndarray] = []

    def iter_chunks(self, size: int) -> Iterator[np.ndarray]:
        yield from iter_video_frames(self.path, size, self.what)

    def describe(self, what: str) -> str:
        return f"{what} {self.path}"

    def _restart(self) -> None:
        self._reader = iter_video_frames(self.path, 16, self.what)
        self._pos, self._pending = 0, []

    def _next_frame(self) -> np.ndarray:
        if not self._pending:
            self._pending = list(next(self._reader))
        self._pos += 1
        return self._pending.pop(0)

    def get(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        lo, hi = int(indices.min()), int(indices.max())
        if self._reader is None or lo < self._pos:
            self._restart()
        while self._pos < lo:
            self._next_frame()
        wanted = {int(i) for i in indices}
        keep_range = hi - lo < self.REREAD_WINDOW  # a chunk: keep it so a loop or ping-pong can revisit it
        held = {}
        while self._pos <= hi:
            i = self._pos
            frame = self._next_frame()
            if keep_range or i in wanted:  # frames spread over the video (references): only those
                held[i] = frame
        if keep_range:
            self._pending = [held[i] for i in range(lo, hi + 1)] + self._pending
            self._pos = lo
        return np.stack([held[int(i)] for i in indices])
