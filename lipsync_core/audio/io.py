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

import numpy as np
import torch
from scipy.signal import resample_poly

from ..types import LipSyncInputError

TARGET_RATE = 16000


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
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
        raise LipSyncInputError(f"{name}: sample_rate {rate!r} is not a number.") from exc
    if rate <= 0:
        raise LipSyncInputError(f"{name}: sample_rate {rate} is not positive.")
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
    mono = scale_samples(wave, name).mean(axis=0)
    return resample(mono, rate, target_rate)


def make_audio(wave: np.ndarray, sample_rate: int = TARGET_RATE) -> dict:
    """(N,) or (C, N) float samples -> a ComfyUI AUDIO dict (batch 1)."""
    w = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if w.ndim == 1:
        w = w[None]
    return {"waveform": w[None], "sample_rate": int(sample_rate)}


def load_audio_file(path: str | os.PathLike, target_rate: int = TARGET_RATE) -> np.ndarray:
    """Read an audio or video file's sound (wav, flac, ogg, mp3, mp4, mkv, ...) -> (N,) float32 mono."""
    path = Path(path)
    if not path.is_file():
        raise LipSyncInputError(f"audio file: {path} does not exist; check the path.")
    try:
        import soundfile

        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        wave = data.T
    except Exception:  # not a format libsndfile reads: decode with PyAV (FFmpeg)
        wave, rate = _read_with_av(path)
    if wave.size == 0:
        raise LipSyncInputError(f"audio file: {path} holds no audio samples.")
    return audio_to_mono({"waveform": wave[None], "sample_rate": rate}, target_rate, name=f"audio file {path.name}")


def _read_with_av(path: Path) -> tuple[np.ndarray, int]:
    try:
        import av
    except ImportError as exc:
        raise LipSyncInputError(f"audio file: {path} needs PyAV to decode; pip install av.") from exc
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise LipSyncInputError(f"audio file: {path} has no audio stream.")
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
        raise LipSyncInputError(f"audio file: {path} could not be decoded ({exc}); convert it to wav.") from exc
    wave = np.concatenate(chunks, axis=-1) if chunks else np.zeros((1, 0), np.float32)
    return wave.astype(np.float32), int(rate)


def duration_frames(num_samples: int, sample_rate: int, fps: float) -> int:
    """Video frames covering ``num_samples`` of audio: ceil(duration * fps), so the tail is never cut.

    A tail shorter than 0.1% of a frame (float rounding) does not add a frame.
    """
    return max(int(math.ceil(num_samples * float(fps) / sample_rate - 1e-3)), 0)
