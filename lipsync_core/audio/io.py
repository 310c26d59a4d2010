"""Any ComfyUI AUDIO (or file) -> 16 kHz mono float32.

ComfyUI's AUDIO is ``{"waveform": tensor [B, C, T], "sample_rate": int}``; VideoHelperSuite
passes a lazy Mapping whose ``["waveform"]`` decodes on access. Both are read through the
Mapping interface, once. Integer samples are scaled to -1..1 by their type's range; float
samples whose peak is far above 1 are taken to be int16-scaled (or int32-scaled) and scaled
the same way (documented in docs/FRONTEND.md). NaN/inf samples become 0; audio that is empty
or has no finite sample is an error.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..types import LipSyncInputError

# torch and scipy are imported where they are used: the command line reads audio files before it
# needs either, and a bad file must be reported before those heavy imports.

TARGET_RATE = 16000


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor (torch is only imported if one is given)
        import torch

        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def scale_samples(samples: np.ndarray, name: str = "audio") -> np.ndarray:
    """Integer or int-range float samples -> float32 in -1..1 (NaN/inf -> 0)."""
    if samples.dtype.kind in "iu":
        info = np.iinfo(samples.dtype)
        if samples.dtype.kind == "u":  # unsigned PCM is offset binary
            samples = samples.astype(np.float64) - (info.max + 1) / 2
            return (samples / ((info.max + 1) / 2)).astype(np.float32)
        return (samples.astype(np.float64) / (info.max + 1)).astype(np.float32)
    if samples.dtype.kind not in "f":
        raise LipSyncInputError(f"{name}: samples of type {samples.dtype} are not audio; pass float or int PCM.")
    samples = samples.astype(np.float32, copy=False)
    finite = np.isfinite(samples)
    if not finite.all():
        samples = np.where(finite, samples, 0.0).astype(np.float32)
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak > 2.0:  # float holding integer PCM values
        samples = samples / (32768.0 if peak <= 32768.0 * 1.01 else 2147483648.0)
    return samples


def resample(wave: np.ndarray, rate: int, target_rate: int = TARGET_RATE) -> np.ndarray:
    """Polyphase resampling (exact rational ratio) along the last axis."""
    rate, target_rate = int(rate), int(target_rate)
    if rate == target_rate:
        return wave.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    ratio = Fraction(target_rate, rate)
    return resample_poly(wave, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)


def audio_to_mono(audio: Mapping, target_rate: int = TARGET_RATE, name: str = "audio") -> np.ndarray:
    """ComfyUI AUDIO (dict or lazy Mapping) -> (N,) float32 mono at ``target_rate``.

    waveform: [B, C, T] (B must be 1), [C, T] or [T]; torch tensor or array; float or int.
    Channels are averaged. Raises LipSyncInputError for anything that is not usable audio.
    """
    if not isinstance(audio, Mapping):
        raise LipSyncInputError(
            f"{name}: expected an AUDIO dict with 'waveform' and 'sample_rate', got {type(audio).__name__}; "
            "connect a Load Audio (or Load Video audio) output."
        )
    try:
        waveform = audio["waveform"]
        rate = audio["sample_rate"]
    except KeyError as exc:
        raise LipSyncInputError(
            f"{name}: the AUDIO has no {exc.args[0]!r} entry; connect a real AUDIO output."
        ) from exc
    except Exception as exc:  # lazy audio that fails to decode
        raise LipSyncInputError(f"{name}: the audio could not be decoded ({exc}); check the source file.") from exc
    if waveform is None:
        raise LipSyncInputError(f"{name}: the AUDIO is empty (no waveform); the video may have no audio track.")
    try:
        rate = int(rate)
    except (TypeError, ValueError) as exc:
        raise LipSyncInputError(
            f"{name}: sample_rate {rate!r} is not a number; connect a real AUDIO (its sample_rate is in Hz)."
        ) from exc
    if rate <= 0:
        raise LipSyncInputError(f"{name}: sample_rate {rate} is not positive; connect a real AUDIO.")
    wave = clean_waveform(waveform, name)
    return resample(wave.mean(axis=0), rate, target_rate)


def clean_waveform(waveform: Any, name: str = "audio") -> np.ndarray:
    """Any waveform ([1, C, T], [C, T] or [T]; float or int; array or tensor) -> float32 [C, T] in -1..1.

    The one sanitiser of every path (audio files, the command line, every node, and the audio a node
    outputs): integer and int-range float samples are scaled, NaN/inf samples become 0. Audio that is
    empty or has no finite sample is refused.
    """
    wave = _to_numpy(waveform)
    if wave.ndim == 3:
        if wave.shape[0] != 1:
            raise LipSyncInputError(
                f"{name}: the AUDIO batch holds {wave.shape[0]} clips; give one clip (batch size 1)."
            )
        wave = wave[0]
    if wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2:
        raise LipSyncInputError(f"{name}: waveform shape {wave.shape} is not [B, C, T]; pass a ComfyUI AUDIO.")
    if wave.shape[0] > 16 and wave.shape[1] <= 16:  # [T, C] given by mistake
        wave = wave.T
    if wave.size == 0 or wave.shape[-1] == 0:
        raise LipSyncInputError(f"{name}: the audio is empty (0 samples); give audio with sound in it.")
    if wave.dtype.kind == "f" and not np.isfinite(wave).any():
        raise LipSyncInputError(f"{name}: every sample is NaN or infinite; the audio is corrupted, re-export it.")
    return np.ascontiguousarray(scale_samples(wave, name))


def make_audio(wave: np.ndarray, sample_rate: int = TARGET_RATE) -> dict:
    """(N,) or (C, N) float samples -> a ComfyUI AUDIO dict (batch 1)."""
    import torch

    w = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if w.ndim == 1:
        w = w[None]
    return {"waveform": w[None], "sample_rate": int(sample_rate)}


# What to do about an audio input without sound (the command line and the nodes say the same).
AUDIO_FIX = "give a file with sound in it (wav, flac, mp3, or a video with an audio track)"
STYLE_AUDIO_FIX = "the style clip must be a video with its own sound (or leave the style out to use the input video)"


def read_audio_file(
    path: str | os.PathLike, what: str = "audio", fix: str = AUDIO_FIX
) -> tuple[np.ndarray, int]:
    """The raw samples of an audio or video file's sound: (float32 [C, N], sample rate), not yet cleaned.

    ``what`` names the input in errors ("audio", "style", ...) and ``fix`` says what to give instead
    when it holds no sound.
    """
    path = Path(path)
    _check_is_file(path, what, fix)
    try:
        import soundfile

        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        wave = data.T
    except Exception:  # not a format libsndfile reads: decode with PyAV (FFmpeg)
        wave, rate = _read_with_av(path, what, fix)
    if wave.size == 0:
        raise LipSyncInputError(f"{what}: {path} holds no audio samples (its sound is empty); {fix}.")
    return np.ascontiguousarray(wave, dtype=np.float32), int(rate)


def load_audio_file(
    path: str | os.PathLike, target_rate: int = TARGET_RATE, what: str = "audio", fix: str = AUDIO_FIX
) -> np.ndarray:
    """Read an audio or video file's sound (wav, flac, ogg, mp3, mp4, mkv, ...) -> (N,) float32 mono."""
    wave, rate = read_audio_file(path, what, fix)
    return audio_to_mono({"waveform": wave[None], "sample_rate": rate}, target_rate, name=f"{what} {Path(path)}")


def probe_audio_file(path: str | os.PathLike, what: str = "audio", fix: str = AUDIO_FIX) -> None:
    """Cheap check that a file exists and has a sound stream (headers only): a one-line error if not."""
    path = Path(path)
    _check_is_file(path, what, fix)
    import soundfile

    try:
        frames = soundfile.info(str(path)).frames
    except Exception:  # noqa: BLE001 - not a libsndfile format: ask FFmpeg
        frames = None
    if frames is not None:
        if frames == 0:
            raise LipSyncInputError(f"{what}: {path} holds no audio samples (its sound is empty); {fix}.")
        return
    import av

    try:
        with av.open(str(path)) as container:
            has_audio = bool(container.streams.audio)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise LipSyncInputError(
            f"{what}: {path} is not a readable audio or video file ({_short(exc)}); {fix}."
        ) from exc
    if not has_audio:
        raise LipSyncInputError(f"{what}: {path} has no audio stream; {fix}.")


def _check_is_file(path: Path, what: str, fix: str) -> None:
    if path.is_dir():
        raise LipSyncInputError(f"{what}: {path} is a folder; name a file in it ({fix}).")
    if not path.is_file():
        raise LipSyncInputError(f"{what}: {path} does not exist; check the path ({fix}).")


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _read_with_av(path: Path, what: str, fix: str) -> tuple[np.ndarray, int]:
    try:
        import av
    except ImportError as exc:
        raise LipSyncInputError(f"{what}: {path} needs PyAV to decode; pip install av.") from exc
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise LipSyncInputError(f"{what}: {path} has no audio stream; {fix}.")
            stream = container.streams.audio[0]
            rate = stream.rate or stream.codec_context.sample_rate
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
            chunks = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except LipSyncInputError:
        raise
    except Exception as exc:
        raise LipSyncInputError(
            f"{what}: {path} could not be decoded ({_short(exc)}); convert it to wav, or {fix}."
        ) from exc
    wave = np.concatenate(chunks, axis=-1) if chunks else np.zeros((1, 0), np.float32)
    return wave.astype(np.float32), int(rate)


def duration_frames(num_samples: int, sample_rate: int, fps: float) -> int:
    """Video frames covering ``num_samples`` of audio: ceil(duration * fps), so the tail is never cut.

    A tail shorter than 0.1% of a frame (float rounding) does not add a frame.
    """
    return max(int(math.ceil(num_samples * float(fps) / sample_rate - 1e-3)), 0)
