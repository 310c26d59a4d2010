"""Audio front end on real synthetic speech (espeak-ng): forms, fps alignment, silence, lengths."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly

from lipsync_core.audio import (
    LENGTH_POLICIES,
    audio_to_mono,
    compute_features,
    detect_silence,
    duration_frames,
    features_from_audio_encoder_output,
    load_audio_file,
    logmel_spec,
    match_length,
)
from lipsync_core.audio.features import logmel, mel_filterbank, power_spectrogram_blocks
from lipsync_core.types import FeatureSpec, LipSyncInputError
from tests.speech import synthesize

FPS_LIST = (23.976, 24, 25, 29.97, 30, 50, 60)


class LazyAudio(Mapping):
    """VideoHelperSuite-style lazy AUDIO: the waveform is produced on access."""

    def __init__(self, make):
        self._make = make
        self.accessed = 0

    def __getitem__(self, key):
        if key == "waveform":
            self.accessed += 1
            return self._make()
        if key == "sample_rate":
            return 44100
        raise KeyError(key)

    def __iter__(self):
        return iter(("waveform", "sample_rate"))

    def __len__(self):
        return 2


@pytest.fixture(scope="module")
def speech_44k_stereo_int16():
    wave, rate = synthesize("The quick brown fox jumps over the lazy dog.")
    up = resample_poly(wave.astype(np.float64), 2, 1)  # 22050 -> 44100 Hz
    stereo = np.stack([up, 0.5 * up]).clip(-32768, 32767).astype(np.int16)
    return stereo  # (2, N) int16 at 44.1 kHz


def test_every_audio_form_gives_the_same_16k_mono(speech_44k_stereo_int16):
    stereo = speech_44k_stereo_int16
    as_int = {"waveform": torch.from_numpy(stereo)[None], "sample_rate": 44100}
    as_float = {"waveform": torch.from_numpy(stereo.astype(np.float32) / 32768.0)[None], "sample_rate": 44100}
    as_int_range_float = {"waveform": torch.from_numpy(stereo.astype(np.float32))[None], "sample_rate": 44100}
    lazy = LazyAudio(lambda: torch.from_numpy(stereo.astype(np.float32) / 32768.0)[None])
    ref = audio_to_mono(as_float)
    expected_len = round(stereo.shape[1] * 16000 / 44100)
    assert ref.dtype == np.float32 and abs(len(ref) - expected_len) <= 1
    assert 0.2 < np.abs(ref).max() <= 1.0
    for form in (as_int, as_int_range_float, lazy):
        out = audio_to_mono(form)
        np.testing.assert_allclose(out, ref, atol=1e-4)
    assert lazy.accessed == 1  # the lazy waveform is decoded once


@pytest.mark.parametrize("fps", FPS_LIST)
def test_features_have_exactly_the_frame_count_at_every_fps(speech_44k_stereo_int16, fps):
    lazy = LazyAudio(lambda: torch.from_numpy(speech_44k_stereo_int16)[None])
    wave = audio_to_mono(lazy)
    duration = len(wave) / 16000
    feats = compute_features(wave, fps)
    expected = int(np.ceil(duration * fps - 1e-3))
    assert len(feats) == expected == duration_frames(len(wave), 16000, fps)
    assert len(feats) / fps >= duration - 1e-6  # the tail is never cut off
    assert feats.features.shape == (expected, feats.spec.dims) and feats.spec == logmel_spec()
    assert feats.fps == float(fps) and feats.silence.shape == (expected,)
    # A video's own frame count wins: longer videos get silent features at the end.
    longer = compute_features(wave, fps, num_frames=expected + 7)
    assert len(longer) == expected + 7
    np.testing.assert_allclose(longer.features[: expected - 1], feats.features[: expected - 1], atol=1e-6)
    assert longer.silence[-5:].all()
    assert np.allclose(longer.features[-1], longer.features[-1].min())
    shorter = compute_features(wave, fps, num_frames=expected // 2)
    assert len(shorter) == expected // 2
    # The AUDIO itself may be given instead of samples.
    direct = compute_features(LazyAudio(lambda: torch.from_numpy(speech_44k_stereo_int16)[None]), fps)
    np.testing.assert_array_equal(direct.features, feats.features)


def test_features_follow_time_not_frame_index(speech_44k_stereo_int16):
    """The same instant gives the same features at 25 and 50 fps (no hard-coded 25)."""
    wave = audio_to_mono({"waveform": torch.from_numpy(speech_44k_stereo_int16)[None], "sample_rate": 44100})
    f25 = compute_features(wave, 25).features
    f50 = compute_features(wave, 50).features
    # 25-fps frame i is centred at (i + 0.5) / 25 = (3i + 1 + 0.5) / 75: frame 3i + 1 at 75 fps.
    f75 = compute_features(wave, 75).features
    n = min(len(f25), len(f75) // 3)
    np.testing.assert_allclose(f25[:n], f75[1 : 3 * n : 3], atol=1e-5)
    assert f50.shape[0] == pytest.approx(2 * f25.shape[0], abs=1)


def test_empty_and_nan_audio_are_clear_errors():
    with pytest.raises(LipSyncInputError, match="audio: the audio is empty"):
        audio_to_mono({"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000})
    with pytest.raises(LipSyncInputError, match="NaN"):
        audio_to_mono({"waveform": torch.full((1, 2, 1000), float("nan")), "sample_rate": 44100})
    with pytest.raises(LipSyncInputError, match="empty"):
        compute_features(np.zeros(0, np.float32), 25)
    with pytest.raises(LipSyncInputError, match="NaN"):
        compute_features(np.full(1600, np.nan, np.float32), 25)
    with pytest.raises(LipSyncInputError, match="batch"):
        audio_to_mono({"waveform": torch.zeros(2, 1, 100), "sample_rate": 16000})
    with pytest.raises(LipSyncInputError, match="sample_rate"):
        audio_to_mono({"waveform": torch.zeros(1, 1, 100)})
    with pytest.raises(LipSyncInputError, match="fps"):
        compute_features(np.ones(1600, np.float32), 0)
    # A few bad samples are zeroed, not fatal.
    wave = np.sin(np.arange(16000) / 5).astype(np.float32)
    wave[100:110] = np.nan
    assert np.isfinite(compute_features(wave, 25).features).all()


def test_silence_is_detected_per_frame(speech_44k_stereo_int16):
    speech = audio_to_mono({"waveform": torch.from_numpy(speech_44k_stereo_int16)[None], "sample_rate": 44100})
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(16000) * 10 ** (-70 / 20)).astype(np.float32)  # 1 s at -70 dBFS
    wave = np.concatenate([hiss, speech, np.zeros(8000, np.float32)])
    silent = detect_silence(wave, 25)
    assert silent[:24].all()  # the first second (minus the frame touching speech)
    assert silent[-12:].all()  # the trailing half second of digital silence
    speech_frames = silent[26 : 25 + int(len(speech) / 16000 * 25) - 5]
    assert speech_frames.mean() < 0.35  # speech is mostly not silence (pauses between words are)
    assert detect_silence(np.zeros(16000, np.float32), 30).all()
    # Hiss frames sit far (> 18 dB on average) below voiced frames in the log-mel features.
    feats = compute_features(wave, 25)
    np.testing.assert_array_equal(feats.silence, silent)
    assert feats.features[:20].mean() + 0.6 < feats.features[~silent].mean()


def test_length_policies():
    fps, sr = 25.0, 16000
    wave = np.ones(int(2.0 * sr), np.float32)  # 2 s = 50 frames
    short_video, long_video = 20, 80
    m = match_length(short_video, wave, fps, "loop")
    assert m.num_frames == 50 and len(m.frame_indices) == 50 and m.frame_indices[20] == 0 and len(m.wave) == 32000
    m = match_length(short_video, wave, fps, "ping_pong")
    assert m.frame_indices[:22].tolist() == list(range(20)) + [18, 17]
    m = match_length(long_video, wave, fps, "trim_to_audio")
    assert m.num_frames == 50 and m.frame_indices.tolist() == list(range(50)) and "cut" in m.note
    m = match_length(short_video, wave, fps, "trim_to_audio")
    assert m.num_frames == 50 and m.frame_indices[-1] == 19
    m = match_length(short_video, wave, fps, "trim_to_video")
    assert m.num_frames == 20 and len(m.wave) == int(0.8 * sr) and "audio cut" in m.note
    m = match_length(long_video, wave, fps, "pad_silence")
    assert m.num_frames == 80 and len(m.wave) == int(3.2 * sr)
    assert m.wave[: 2 * sr].min() == 1.0 and m.wave[2 * sr :].max() == 0.0 and "silence" in m.note
    assert set(LENGTH_POLICIES) == {"loop", "ping_pong", "trim_to_audio", "trim_to_video", "pad_silence"}
    with pytest.raises(LipSyncInputError, match="policy"):
        match_length(10, wave, fps, "stretch")


@pytest.mark.parametrize("fps", (25, 29.97, 60))
def test_comfy_audio_encoder_output_is_aligned_to_frames(fps):
    """encoded_audio [1, T_enc, D] at 50 Hz: a time ramp must come out as each frame's centre time."""
    seconds = 3.0
    t_enc = int(seconds * 50)
    centres = (np.arange(t_enc) + 0.5) / 50
    enc = torch.from_numpy(np.repeat(centres[None, :, None], 4, axis=2).astype(np.float32))
    out = {"encoded_audio": enc, "encoded_audio_all_layers": [enc * 0, enc], "audio_samples": int(seconds * 16000)}
    feats = features_from_audio_encoder_output(out, fps, model_name="wav2vec2-base")
    n = int(np.ceil(seconds * fps - 1e-3))
    assert feats.features.shape == (n, 4)
    frame_t = (np.arange(n) + 0.5) / fps
    inside = (frame_t > centres[0]) & (frame_t < centres[-1])
    np.testing.assert_allclose(feats.features[inside, 0], frame_t[inside], atol=1e-5)
    assert feats.spec.kind == "comfy_audio_encoder" and feats.spec.hop_length == 320 and feats.spec.dims == 4
    assert np.allclose(features_from_audio_encoder_output(out, fps, layer=0).features, 0)
    with pytest.raises(LipSyncInputError, match="AUDIO_ENCODER_OUTPUT"):
        features_from_audio_encoder_output({"waveform": enc}, fps)


def test_feature_spec_mismatch_is_refused():
    trained = logmel_spec()
    other = FeatureSpec("wav2vec2", 16000, 320, 768, {"model": "x", "layer": -1})
    with pytest.raises(LipSyncInputError, match="trained on"):
        other.check_compatible(trained)
    logmel_spec().check_compatible(trained)


def test_load_audio_files(tmp_path, speech_44k_stereo_int16):
    import av
    import soundfile

    stereo = speech_44k_stereo_int16
    wav = tmp_path / "speech.wav"
    soundfile.write(str(wav), stereo.T, 44100, subtype="PCM_16")
    ref = audio_to_mono({"waveform": torch.from_numpy(stereo)[None], "sample_rate": 44100})
    np.testing.assert_allclose(load_audio_file(wav), ref, atol=1e-4)
    # An mp4 (AAC) through PyAV: lossy, so compare loudness envelope and length.
    mp4 = tmp_path / "speech.mp4"
    with av.open(str(mp4), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(stereo.reshape(1, -1, order="F")), format="s16", layout="stereo"
        )
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    got = load_audio_file(mp4)
    assert abs(len(got) - len(ref)) < 0.1 * 16000  # codec priming/padding only
    env = lambda x: np.sqrt(np.convolve(x**2, np.ones(1600) / 1600, "valid"))  # noqa: E731
    lag = int(np.argmax(np.correlate(env(got)[::160], env(ref)[::160], "full"))) - (len(env(ref)[::160]) - 1)
    a, b = env(got)[::160], env(ref)[::160]
    a, b = (a[lag:], b) if lag >= 0 else (a, b[-lag:])
    n = min(len(a), len(b))
    assert np.corrcoef(a[:n], b[:n])[0, 1] > 0.9
    with pytest.raises(LipSyncInputError, match="does not exist"):
        load_audio_file(tmp_path / "missing.wav")


@pytest.mark.parametrize("model", ["wav2vec2", "hubert"])
def test_learned_features_from_a_local_folder(tmp_path, model, speech_44k_stereo_int16):
    """A (tiny, random) wav2vec2/HuBERT saved to a folder is read with local_files_only and aligned to frames."""
    pytest.importorskip("transformers")
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model

    from lipsync_core.audio import SpeechEncoder

    cfg_cls, model_cls = (Wav2Vec2Config, Wav2Vec2Model) if model == "wav2vec2" else (HubertConfig, HubertModel)
    torch.manual_seed(0)
    config = cfg_cls(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    model_cls(config).save_pretrained(tmp_path / model)
    encoder = SpeechEncoder(tmp_path / model, layer=-1, window_s=1.0, context_s=0.2)
    assert encoder.hop == 320 and encoder.receptive_field == 400 and encoder.spec.kind == model
    wave = audio_to_mono({"waveform": torch.from_numpy(speech_44k_stereo_int16)[None], "sample_rate": 44100})
    wave = wave[: 3 * 16000]
    feats = compute_features(wave, 29.97, kind=model, encoder=encoder)
    assert feats.features.shape == (int(np.ceil(3 * 29.97 - 1e-3)), 32) and np.isfinite(feats.features).all()
    assert feats.spec.dims == 32 and feats.spec.hop_length == 320
    # Long audio is encoded in windows; it keeps exactly one frame per hop, like a single pass.
    whole = SpeechEncoder(tmp_path / model, window_s=60.0).encode(wave)
    windowed = encoder.encode(wave)
    assert windowed.shape == whole.shape
    with pytest.raises(LipSyncInputError, match="kind"):
        compute_features(wave, 25, kind="hubert" if model == "wav2vec2" else "wav2vec2", encoder=encoder)
    with pytest.raises(LipSyncInputError, match="config.json"):
        SpeechEncoder(tmp_path / "nothing-here")


LIBROSA_FIXTURE = Path(__file__).parent / "fixtures" / "logmel_librosa.npz"


def test_logmel_is_the_feature_the_models_were_trained_on():
    """The shipped models were trained on librosa's log-mel (librosa 0.11.0: melspectrogram, Slaney mel, centred
    zero-padded STFT, periodic Hann); the pack computes it with numpy alone. The fixture holds 0.75 s of the demo's
    speech and librosa's features of it."""
    stored = np.load(LIBROSA_FIXTURE)
    ours = logmel(stored["wave"])
    assert ours.shape == stored["logmel"].shape == (76, 80)
    np.testing.assert_allclose(ours, stored["logmel"], atol=1e-4)  # 1e-4 = 0.003 dB


@pytest.mark.parametrize("length", [161, 399, 1000, 1001, 16000])
def test_logmel_matches_librosa_on_any_length(length):
    librosa = pytest.importorskip("librosa", reason="librosa is not installed (the fixture test above covers it)")
    wave = np.random.default_rng(length).standard_normal(length).astype(np.float32) * 0.1
    mel = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=512, hop_length=160, win_length=400, n_mels=80,
                                         fmin=55.0, fmax=7600.0, center=True, pad_mode="constant", power=2.0)
    expected = ((10.0 * np.log10(np.maximum(mel, 1e-10)) + 40.0) / 30.0).T
    np.testing.assert_allclose(logmel(wave), expected, atol=1e-4)


def test_mel_filterbank_puts_a_tone_in_its_band():
    """Filters cover 55-7600 Hz with unit area each; a 1 kHz tone lands in the band whose centre is nearest."""
    bank = mel_filterbank(16000, 512, 80, 55.0, 7600.0)
    assert bank.shape == (80, 257) and (bank >= 0).all() and not bank.flags.writeable
    hz = np.linspace(0, 8000, 257)
    wide = (bank > 0).sum(1) >= 10  # unit area, where a filter spans enough FFT bins to sample its triangle
    assert wide[-15:].all() and np.allclose((bank[wide] * (hz[1] - hz[0])).sum(1), 1.0, atol=0.05)
    tone = np.sin(2 * np.pi * 1000.0 * np.arange(16000) / 16000).astype(np.float32)
    band = int(np.argmax(logmel(tone)[50]))
    centre = hz[np.argmax(bank[band])]
    assert abs(centre - 1000.0) < 60.0, centre


def test_the_spectrum_in_blocks_is_the_spectrum_whole():
    """Long tracks are computed a block of frames at a time (bounded memory): block edges change nothing."""
    wave = np.random.default_rng(7).standard_normal(16000 * 3 + 77).astype(np.float32)
    whole = list(power_spectrogram_blocks(wave, block=10**6))
    blocks = list(power_spectrogram_blocks(wave, block=7))
    assert len(whole) == 1 and len(blocks) == -(-len(whole[0]) // 7) and len(whole[0]) == 1 + len(wave) // 160
    assert np.array_equal(np.concatenate(blocks), whole[0])
