"""Weights I/O: one .safetensors per model, config in the metadata, clear one-line errors."""

import json

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors import safe_open

from lipsync_core.models.io import load_model, save_model
from lipsync_core.models.motion import LipMotionTransformer
from lipsync_core.models.renderer import LipRenderUNet
from lipsync_core.weights import CONFIG_KEY, WeightsFileError, load_tensors, save_tensors


def motion_model():
    torch.manual_seed(0)
    return LipMotionTransformer(
        audio_dim=6,
        d_model=16,
        num_heads=2,
        decoder_layers=1,
        audio_encoder_layers=1,
        lip_encoder_layers=1,
        ff_dim=32,
        feature_spec={"kind": "logmel", "dims": 6},
    ).eval()


def renderer_model():
    torch.manual_seed(0)
    return LipRenderUNet(
        latent_size=8,
        block_out_channels=(8, 16),
        cross_attention_levels=(False, True),
        attention_head_dim=8,
        identity_dim=2,
        motion_window=3,
        motion_hidden_dim=8,
        motion_code_dim=8,
        norm_groups=4,
    ).eval()


def tiny_vae():
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4, sample_size=16).eval()


def one_line(exc: pytest.ExceptionInfo, path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_motion_round_trip_is_bit_identical(tmp_path):
    model = motion_model()
    path = save_model(model, tmp_path / "motion.safetensors", extra={"epochs": 3})
    loaded = load_model(path, expected_kind="motion")
    assert isinstance(loaded, LipMotionTransformer) and not loaded.training
    assert loaded.config.feature_spec == {"kind": "logmel", "dims": 6}
    audio, ra, rm = torch.randn(20, 6), torch.randn(8, 6), torch.randn(8, 13)
    a, att_a = model.predict_clip(audio, ra, rm, return_attention=True)
    b, att_b = loaded.predict_clip(audio, ra, rm, return_attention=True)
    assert torch.equal(a, b) and torch.equal(att_a, att_b)
    assert load_tensors(path).extra["epochs"] == 3


def test_renderer_and_vae_round_trip_is_bit_identical(tmp_path):
    model = renderer_model()
    path = save_model(model, tmp_path / "renderer.safetensors")
    loaded = load_model(path, expected_kind="renderer")
    x, motion, ref = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 18), torch.randn(2, 1, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x, 5, motion, ref), loaded(x, 5, motion, ref))
    assert tuple(loaded.config.block_out_channels) == (8, 16)
    vae = tiny_vae()
    vpath = save_model(vae, tmp_path / "vae.safetensors")
    vloaded = load_model(vpath, expected_kind="vae")
    img = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(vae.encode(img).latent_dist.mean, vloaded.encode(img).latent_dist.mean)


def test_stage1_file_where_stage2_is_expected(tmp_path):
    path = save_model(motion_model(), tmp_path / "motion.safetensors")
    with pytest.raises(WeightsFileError) as exc:
        load_model(path, expected_kind="renderer")
    assert "'motion'" in one_line(exc, path) and "'renderer'" in str(exc.value)


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("this is not a weights file at all")
    with pytest.raises(WeightsFileError) as exc:
        load_model(path, expected_kind="motion")
    assert "not a readable safetensors" in one_line(exc, path)
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"\x80\x04pickle")
    with pytest.raises(WeightsFileError) as exc:
        load_model(pt)
    assert "only .safetensors" in one_line(exc, pt)
    with pytest.raises(WeightsFileError) as exc:
        load_model(tmp_path / "missing.safetensors")
    one_line(exc, tmp_path / "missing.safetensors")


def test_truncated_file(tmp_path):
    path = save_model(motion_model(), tmp_path / "motion.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(WeightsFileError) as exc:
        load_model(path, expected_kind="motion")
    assert "truncated or corrupted" in one_line(exc, path) or "not a readable" in str(exc.value)


def test_corrupted_tensor_bytes_fail_the_checksum(tmp_path):
    path = save_model(motion_model(), tmp_path / "motion.safetensors")
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF  # inside the tensor data, which safetensors itself does not check
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsFileError) as exc:
        load_model(path, expected_kind="motion")
    assert "checksum" in one_line(exc, path)


def test_shape_mismatch_names_the_tensor(tmp_path):
    model = motion_model()
    path = save_model(model, tmp_path / "motion.safetensors")
    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()[CONFIG_KEY])
    config["ff_dim"] = 48  # the config now disagrees with the stored tensors
    tensors = load_tensors(path).tensors
    bad = save_tensors(tmp_path / "bad.safetensors", tensors, kind="motion", config=config)
    with pytest.raises(WeightsFileError) as exc:
        load_model(bad, expected_kind="motion")
    msg = one_line(exc, bad)
    assert "ff." in msg and "(48" in msg


def test_missing_tensor_and_bad_config(tmp_path):
    model = motion_model()
    path = save_model(model, tmp_path / "motion.safetensors")
    wf = load_tensors(path)
    tensors = dict(wf.tensors)
    tensors.pop("head.3.weight")
    missing = save_tensors(tmp_path / "missing.safetensors", tensors, kind="motion", config=wf.config)
    with pytest.raises(WeightsFileError) as exc:
        load_model(missing)
    assert "head.3.weight" in one_line(exc, missing)
    config = dict(wf.config)
    config["reference_mode"] = "bogus"
    broken = save_tensors(tmp_path / "cfg.safetensors", wf.tensors, kind="motion", config=config)
    with pytest.raises(WeightsFileError) as exc:
        load_model(broken)
    assert "config does not build" in one_line(exc, broken)


def test_newer_format_version_is_refused(tmp_path):
    wf = load_tensors(save_model(motion_model(), tmp_path / "m.safetensors"))
    newer = save_tensors(tmp_path / "v9.safetensors", wf.tensors, kind="motion", config=wf.config, format_version=9)
    with pytest.raises(WeightsFileError) as exc:
        load_model(newer, expected_kind="motion")
    assert "version 9" in one_line(exc, newer)


def test_dtype_and_device_on_load(tmp_path):
    path = save_model(renderer_model(), tmp_path / "r.safetensors")
    loaded = load_model(path, dtype=torch.bfloat16)
    assert next(loaded.parameters()).dtype == torch.bfloat16


def test_renderer_without_a_recorded_framing_is_read_as_the_first_one(tmp_path):
    from lipsync_core.face.template import LEGACY_FRAMING, crop_framing
    from lipsync_core.models.bundle import check_framing
    from lipsync_core.types import LipSyncInputError

    wf = load_tensors(save_model(renderer_model(), tmp_path / "r.safetensors"))
    config = {k: v for k, v in wf.config.items() if k != "crop_framing"}  # as files written before issue 15
    old = save_tensors(tmp_path / "old.safetensors", wf.tensors, kind="renderer", config=config)
    loaded = load_model(old, expected_kind="renderer")
    assert tuple(loaded.config.crop_framing) == LEGACY_FRAMING
    with pytest.raises(LipSyncInputError, match="trained on face crops framed") as exc:
        check_framing(loaded.config.crop_framing)
    assert "\n" not in str(exc.value)
    check_framing(crop_framing())  # this version's framing renders
