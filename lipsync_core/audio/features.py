"""Per-video-frame audio features at any fps (docs/FRONTEND.md, "Audio features").

Frame i of a video at ``fps`` covers [i/fps, (i+1)/fps) and is represented by its centre
(i + 0.5)/fps. Every feature kind is computed at its own rate and then *sampled* at those
centres, so 23.976, 25, 29.97 or 60 fps all work and nothing assumes 25. The number of
frames is the video's frame count when given, else ceil(duration * fps) (the tail is kept);
frames past the end of the audio get silence (log-mel) or the last encoder frame (learned).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

import numpy as np
import torch

from ..types import AudioFeatures, FeatureSpec, LipSyncInputError
from .io import TARGET_RATE, audio_to_mono, duration_frames

# Log-mel settings (16 kHz): 25 ms windows every 10 ms, 80 mel bands 55..7600 Hz.
N_FFT = 512
WIN_LENGTH = 400
HOP_LENGTH = 160
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
# Each video frame samples CONTEXT mel frames 10 ms apart around its centre (40 ms span at any fps).
CONTEXT = 4
DB_FLOOR = -100.0
# Features are (dB - DB_OFFSET) / DB_SCALE: silence = -2.0, loud speech ~ +1.
DB_OFFSET = -40.0
DB_SCALE = 30.0
SPECTRUM_BLOCK = 1024  # STFT frames computed at once (about 10 s of audio)


def logmel_spec(n_mels: int = N_MELS, context: int = CONTEXT, sample_rate: int = TARGET_RATE) -> FeatureSpec:
    """The FeatureSpec of :func:`compute_features` with kind='logmel'."""
    return FeatureSpec(
        kind="logmel",
        sample_rate=sample_rate,
        hop_length=HOP_LENGTH,
        dims=n_mels * context,
        extra={
            "n_mels": n_mels,
            "n_fft": N_FFT,
            "win_length": WIN_LENGTH,
            "fmin": FMIN,
            "fmax": FMAX,
            "context": context,
            "context_step_s": HOP_LENGTH / sample_rate,
            "norm": f"(10*log10(mel_power) - {DB_OFFSET}) / {DB_SCALE}, floor {DB_FLOOR} dB",
        },
    )


def frame_centres(num_frames: int, fps: float) -> np.ndarray:
    """Centre time (s) of each video frame."""
    return (np.arange(num_frames, dtype=np.float64) + 0.5) / float(fps)


def _check_wave(wave, name: str) -> np.ndarray:
    if isinstance(wave, Mapping):  # a ComfyUI AUDIO given directly
        wave = audio_to_mono(wave, TARGET_RATE, name=name)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise LipSyncInputError(f"{name}: expected mono samples (N,), got shape {wave.shape}; use audio_to_mono first.")
    if wave.size == 0:
        raise LipSyncInputError(f"{name}: the audio is empty (0 samples); give audio with sound in it.")
    if not np.isfinite(wave).any():
        raise LipSyncInputError(f"{name}: every sample is NaN or infinite; the audio is corrupted, re-export it.")
    if not np.isfinite(wave).all():
        wave = np.where(np.isfinite(wave), wave, 0.0).astype(np.float32)
    return wave


def _check_fps(fps: float) -> float:
    try:
        fps = float(fps)
    except (TypeError, ValueError) as exc:
        raise LipSyncInputError(f"fps: {fps!r} is not a number; give the video's frame rate.") from exc
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        raise LipSyncInputError(f"fps: {fps} is not a video frame rate; give e.g. 25 or 29.97.")
    return fps


def _num_frames(wave: np.ndarray, sample_rate: int, fps: float, num_frames: int | None) -> int:
    if num_frames is None:
        return max(duration_frames(len(wave), sample_rate, fps), 1)
    if int(num_frames) < 1:
        raise LipSyncInputError(f"num_frames: {num_frames} must be at least 1.")
    return int(num_frames)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (the Auditory Toolbox's, librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * 27.0 / np.log(6.4), linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0), mel * 200.0 / 3.0)


@cache
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, centres evenly spaced on the Slaney mel scale, each scaled
    to unit area (Slaney normalisation): the filters of the features every model here was trained on."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    rising = (bins[None, :] - edges[:-2, None]) / np.diff(edges)[:-1, None]
    falling = (edges[2:, None] - bins[None, :]) / np.diff(edges)[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


def power_spectrogram_blocks(wave: np.ndarray, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH,
                             win_length: int = WIN_LENGTH, block: int = SPECTRUM_BLOCK) -> Iterator[np.ndarray]:
    """(N,) samples -> |STFT|² in consecutive blocks of at most ``block`` frames, (frames, n_fft // 2 + 1) each;
    1 + N // hop frames in all, frame j centred at sample j*hop (the signal is zero-padded by n_fft/2 at both
    ends), under a periodic Hann window of ``win_length`` centred in n_fft. Blocks keep the memory of a long
    track bounded by the block, not by the audio."""
    window = np.zeros(n_fft, dtype=np.float32)
    start = (n_fft - win_length) // 2
    window[start:start + win_length] = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    padded = np.pad(np.asarray(wave, dtype=np.float32), n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]  # a view: no copy
    for first in range(0, len(frames), block):
        spectrum = np.fft.rfft(frames[first:first + block] * window, axis=-1)
        yield (spectrum.real**2 + spectrum.imag**2).astype(np.float32)


def logmel(wave: np.ndarray, sample_rate: int = TARGET_RATE, n_mels: int = N_MELS) -> np.ndarray:
    """(N,) samples -> (M, n_mels) normalised log-mel frames at HOP_LENGTH (frame j centred at j*hop)."""
    bank = mel_filterbank(sample_rate, N_FFT, n_mels, FMIN, FMAX).T
    mel = np.concatenate([power @ bank for power in power_spectrogram_blocks(wave)])
    db = 10.0 * np.log10(np.maximum(mel, 10 ** (DB_FLOOR / 10)))
    return ((db - DB_OFFSET) / DB_SCALE).astype(np.float32)


def sample_sequence(seq: np.ndarray, seq_times: np.ndarray, times: np.ndarray, fill: np.ndarray | None) -> np.ndarray:
    """Linear interpolation of (M, D) ``seq`` (at ``seq_times``, evenly spaced) at ``times`` (...,).

    Outside the sequence: ``fill`` (D,) when given, else the nearest end value.
    """
    step = seq_times[1] - seq_times[0] if len(seq_times) > 1 else 1.0
    pos = (times - seq_times[0]) / step
    lo = np.clip(np.floor(pos).astype(np.int64), 0, len(seq) - 1)
    hi = np.clip(lo + 1, 0, len(seq) - 1)
    w = np.clip(pos - lo, 0.0, 1.0)[..., None].astype(np.float32)
    out = seq[lo] * (1 - w) + seq[hi] * w
    if fill is not None:
        outside = (pos < -0.5) | (pos > len(seq) - 0.5)
        out[outside] = fill
    return out


def compute_features(
    wave: np.ndarray | Mapping,
    fps: float,
    num_frames: int | None = None,
    kind: str = "logmel",
    sample_rate: int = TARGET_RATE,
    n_mels: int = N_MELS,
    context: int = CONTEXT,
    encoder: SpeechEncoder | None = None,
    with_silence: bool = True,
    name: str = "audio",
) -> AudioFeatures:
    """16 kHz mono samples (or a ComfyUI AUDIO) -> AudioFeatures (num_frames, D) aligned to a video at ``fps``.

    kind: "logmel" (weight-free, default) or a learned kind ("wav2vec2", "hubert", ...) computed by
    ``encoder`` (a :class:`SpeechEncoder` loaded from a local folder).
    """
    wave = _check_wave(wave, name)
    fps = _check_fps(fps)
    n = _num_frames(wave, sample_rate, fps, num_frames)
    centres = frame_centres(n, fps)
    if kind == "logmel":
        mel = logmel(wave, sample_rate, n_mels)
        step = HOP_LENGTH / sample_rate
        offsets = (np.arange(context) - (context - 1) / 2) * step
        times = centres[:, None] + offsets[None, :]
        silence_row = np.full(n_mels, (DB_FLOOR - DB_OFFSET) / DB_SCALE, dtype=np.float32)
        feats = sample_sequence(mel, np.arange(len(mel)) * step, times, silence_row).reshape(n, context * n_mels)
        spec = logmel_spec(n_mels, context, sample_rate)
    else:
        if encoder is None:
            raise LipSyncInputError(
                f"audio features: kind {kind!r} needs a speech encoder loaded from a local folder "
                "(SpeechEncoder(path)); or use kind='logmel'."
            )
        if encoder.spec.kind != kind:
            raise LipSyncInputError(
                f"audio features: kind {kind!r} asked for, but the encoder is {encoder.spec.kind!r}."
            )
        hidden = encoder.encode(wave)
        t_enc = (np.arange(len(hidden)) * encoder.hop + encoder.receptive_field / 2) / sample_rate
        feats = sample_sequence(hidden, t_enc, centres, None)
        spec = encoder.spec
    silence = detect_silence(wave, fps, n, sample_rate) if with_silence else None
    return AudioFeatures(features=np.ascontiguousarray(feats, dtype=np.float32), fps=fps, spec=spec, silence=silence)


def detect_silence(
    wave: np.ndarray | Mapping,
    fps: float,
    num_frames: int | None = None,
    sample_rate: int = TARGET_RATE,
    floor_db: float = -50.0,
    relative_db: float = 35.0,
) -> np.ndarray:
    """(num_frames,) bool: True where a video frame's audio is silent.

    A frame's level is the RMS (dBFS) of the samples it covers; it is silent when below
    ``floor_db`` or more than ``relative_db`` under the clip's loud level (95th percentile).
    Frames past the end of the audio are silent.
    """
    wave = _check_wave(wave, "audio")
    fps = _check_fps(fps)
    n = _num_frames(wave, sample_rate, fps, num_frames)
    edges = np.round(np.arange(n + 1) * sample_rate / fps).astype(np.int64)
    edges = np.clip(edges, 0, len(wave))
    csum = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    counts = edges[1:] - edges[:-1]
    energy = (csum[edges[1:]] - csum[edges[:-1]]) / np.maximum(counts, 1)
    level = 10 * np.log10(energy + 1e-12)
    level[counts == 0] = -120.0
    loud = np.percentile(level[counts > 0], 95) if (counts > 0).any() else -120.0
    return (level < floor_db) | (level < loud - relative_db)


# ----------------------------------------------------------------------------- learned features


class SpeechEncoder:
    """A wav2vec2 / HuBERT (or similar) model from a local transformers folder; never downloads.

    layer: which hidden state to use (-1 = last; 0 = the CNN feature projection).
    Long audio is encoded in windows of ``window_s`` with ``context_s`` of context on each side.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        layer: int = -1,
        device: str | torch.device = "cpu",
        window_s: float = 20.0,
        context_s: float = 1.0,
    ):
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise LipSyncInputError(
                f"speech encoder: {folder} is not a transformers model folder (no config.json); "
                "give a local wav2vec2/HuBERT folder (it is never downloaded)."
            )
        from transformers import AutoConfig, AutoModel

        try:
            config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True).to(device).eval()
        except (OSError, ValueError) as exc:
            raise LipSyncInputError(f"speech encoder: {folder} could not be loaded ({exc}).") from exc
        self.device = torch.device(device)
        self.layer = int(layer)
        self.normalize = getattr(config, "feat_extract_norm", "group") == "layer" or getattr(
            config, "do_stable_layer_norm", False
        )
        try:
            from transformers import AutoFeatureExtractor

            fe = AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
            self.normalize = bool(getattr(fe, "do_normalize", self.normalize))
        except (OSError, ValueError):
            pass
        strides = getattr(config, "conv_stride", [320])
        kernels = getattr(config, "conv_kernel", [400])
        self.hop = int(np.prod(strides))
        rf, jump = 1, 1
        for k, s in zip(kernels, strides, strict=False):
            rf += (k - 1) * jump
            jump *= s
        self.receptive_field = rf
        self.window = int(window_s * TARGET_RATE) // self.hop * self.hop
        self.context = int(context_s * TARGET_RATE) // self.hop * self.hop
        self.spec = FeatureSpec(
            kind=str(config.model_type),
            sample_rate=TARGET_RATE,
            hop_length=self.hop,
            dims=int(config.hidden_size),
            extra={"model": folder.name, "layer": self.layer},
        )

    @torch.inference_mode()
    def _run(self, chunk: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(chunk.astype(np.float32))[None].to(self.device)
        if self.normalize:
            x = (x - x.mean()) / torch.sqrt(x.var() + 1e-7)
        out = self.model(x, output_hidden_states=True)
        return out.hidden_states[self.layer][0].float().cpu().numpy()

    def encode(self, wave: np.ndarray) -> np.ndarray:
        """(N,) 16 kHz samples -> (M, D) hidden states, one per ``hop`` samples."""
        wave = np.asarray(wave, dtype=np.float32)
        if len(wave) < self.receptive_field:
            wave = np.pad(wave, (0, self.receptive_field - len(wave)))
        if len(wave) <= self.window + 2 * self.context:
            return self._run(wave)
        parts = []
        for start in range(0, len(wave), self.window):
            a = max(start - self.context, 0)
            b = min(start + self.window + self.context, len(wave))
            hidden = self._run(wave[a:b])
            skip = (start - a) // self.hop
            keep = min(self.window, len(wave) - start) // self.hop
            parts.append(hidden[skip : skip + max(keep, 1)])
        return np.concatenate(parts)


def features_from_audio_encoder_output(
    output: Mapping,
    fps: float,
    num_frames: int | None = None,
    layer: int | None = None,
    model_name: str = "",
    sample_rate: int = TARGET_RATE,
    hop_length: int = 320,
    name: str = "audio_encoder_output",
) -> AudioFeatures:
    """ComfyUI AUDIO_ENCODER_OUTPUT -> per-video-frame features.

    ``output["encoded_audio"]`` is [B=1, T_enc, D] (wav2vec2/whisper at 50 Hz); ``layer`` picks
    ``output["encoded_audio_all_layers"][layer]`` instead. The encoder frame rate is taken from
    ``output["audio_samples"]`` (16 kHz samples) when present, else from ``hop_length``.
    """
    if not isinstance(output, Mapping) or "encoded_audio" not in output:
        raise LipSyncInputError(f"{name}: expected ComfyUI's AUDIO_ENCODER_OUTPUT (a dict with 'encoded_audio').")
    fps = _check_fps(fps)
    enc = output["encoded_audio"]
    if layer is not None:
        layers = output.get("encoded_audio_all_layers")
        if layers is None or not -len(layers) <= layer < len(layers):
            raise LipSyncInputError(f"{name}: layer {layer} is not available in encoded_audio_all_layers.")
        enc = layers[layer]
    enc = np.asarray(enc.detach().float().cpu().numpy() if isinstance(enc, torch.Tensor) else enc, dtype=np.float32)
    if enc.ndim == 3:
        if enc.shape[0] != 1:
            raise LipSyncInputError(f"{name}: holds a batch of {enc.shape[0]} clips; encode one clip.")
        enc = enc[0]
    if enc.ndim != 2 or enc.shape[0] == 0:
        raise LipSyncInputError(f"{name}: encoded_audio shape {enc.shape} is not [1, T, D] with T > 0.")
    samples = output.get("audio_samples")
    duration = float(samples) / sample_rate if samples else enc.shape[0] * hop_length / sample_rate
    n = (
        max(duration_frames(int(round(duration * sample_rate)), sample_rate, fps), 1)
        if num_frames is None
        else int(num_frames)
    )
    step = duration / enc.shape[0]
    feats = sample_sequence(enc, (np.arange(enc.shape[0]) + 0.5) * step, frame_centres(n, fps), None)
    spec = FeatureSpec(
        kind="comfy_audio_encoder",
        sample_rate=sample_rate,
        hop_length=int(round(step * sample_rate)),
        dims=int(enc.shape[1]),
        extra={"model": model_name, "layer": -1 if layer is None else int(layer)},
    )
    return AudioFeatures(features=np.ascontiguousarray(feats), fps=fps, spec=spec, silence=None)
