"""Stage 1: the audio-aware style Transformer, its variants, batching and loss."""

import numpy as np
import pytest
import torch

from lipsync_core.models.motion import LipMotionTransformer, motion_loss
from lipsync_core.models.precision import autocast_context
from lipsync_core.types import LipSyncInputError

D = 12  # small audio feature size for tests


def small(mode="audio_aware", **kw):
    torch.manual_seed(0)
    cfg = dict(
        audio_dim=D,
        d_model=32,
        num_heads=4,
        decoder_layers=2,
        audio_encoder_layers=1,
        lip_encoder_layers=1,
        ff_dim=64,
        dropout=0.0,
        reference_mode=mode,
    )
    cfg.update(kw)
    return LipMotionTransformer(**cfg).eval()


def data(b=3, n=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 11, D, generator=g), torch.randn(b, n, D, generator=g), torch.randn(b, n, 13, generator=g))


def test_defaults_are_the_papers():
    cfg = LipMotionTransformer(audio_dim=D).config
    assert (cfg.d_model, cfg.num_heads, cfg.decoder_layers, cfg.window, cfg.num_params) == (256, 8, 3, 5, 13)
    assert cfg.reference_mode == "audio_aware" and cfg.vertex_loss_weight == 300.0


@pytest.mark.parametrize("mode", ["audio_aware", "lip_only", "none"])
def test_gradients_reach_every_parameter(mode):
    model = small(mode).train()
    audio = torch.randn(2, 16, D)
    _, ra, rm = data(b=2)
    # One clip with its reference, one with the reference dropped: the null token learns too.
    pred = model.forward_clips(audio, ra, rm, drop_reference=torch.tensor([False, True]))
    assert pred.shape == (2, 16, 13)
    loss, parts = motion_loss(pred, torch.randn_like(pred), torch.randn(13, 30), 300.0)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert no_grad == []
    assert set(parts) == {"param_l1", "vertex_l1"}


def test_reference_audio_changes_attention_and_rows_sum_to_one():
    model = small()
    win, ra, rm = data()
    p1, a1 = model(win, ra, rm, return_attention=True)
    p2, a2 = model(win, torch.randn_like(ra), rm, return_attention=True)
    assert a1.shape == (3, 10)
    torch.testing.assert_close(a1.sum(-1), torch.ones(3))
    torch.testing.assert_close(a2.sum(-1), torch.ones(3))
    assert (a1 - a2).abs().max() > 1e-3  # only the reference *audio* changed, and the keys follow it
    assert (p1 - p2).abs().max() > 1e-5


def test_lip_only_keys_ignore_reference_audio():
    model = small("lip_only")
    win, ra, rm = data()
    p1, a1 = model(win, ra, rm, return_attention=True)
    p2, a2 = model(win, torch.randn_like(ra), rm, return_attention=True)
    torch.testing.assert_close(a1, a2)
    torch.testing.assert_close(p1, p2)
    _, a3 = model(win, ra, rm + 1.0, return_attention=True)
    assert (a1 - a3).abs().max() > 1e-4


def test_none_mode_ignores_the_reference():
    model = small("none")
    win, ra, rm = data()
    p_ref, attn = model(win, ra, rm, return_attention=True)
    p_other = model(win, torch.randn_like(ra), torch.randn_like(rm))
    p_noref = model(win)
    assert attn is None
    torch.testing.assert_close(p_ref, p_other)
    torch.testing.assert_close(p_ref, p_noref)
    assert not hasattr(model, "ref_audio_encoder")


def test_padding_mask_equals_a_shorter_reference():
    model = small()
    win, ra, rm = data(n=10)
    pad = torch.zeros(3, 10, dtype=torch.bool)
    pad[:, 7:] = True
    p_pad, a_pad = model(win, ra, rm, pad, return_attention=True)
    p_short, a_short = model(win, ra[:, :7], rm[:, :7], return_attention=True)
    torch.testing.assert_close(p_pad, p_short, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a_pad[:, :7], a_short, atol=1e-6, rtol=1e-5)
    assert torch.all(a_pad[:, 7:] == 0)


def test_reference_dropout_is_the_no_reference_path():
    model = small()
    win, ra, rm = data()
    dropped = model(win, ra, rm, drop_reference=torch.tensor([True, False, True]))
    none = model(win)
    full = model(win, ra, rm)
    torch.testing.assert_close(dropped[[0, 2]], none[[0, 2]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dropped[1], full[1], atol=1e-5, rtol=1e-5)
    model.train()
    model.config.reference_dropout  # noqa: B018 - config is readable
    assert model.training


def test_make_windows_replicates_edges():
    model = small()
    audio = torch.arange(7 * D, dtype=torch.float32).view(7, D)
    w = model.make_windows(audio)
    assert w.shape == (7, 11, D)
    torch.testing.assert_close(w[0, :6], audio[0].expand(6, D))
    torch.testing.assert_close(w[0, 5:], torch.cat([audio[:6]]))
    torch.testing.assert_close(w[3, 5], audio[3])
    torch.testing.assert_close(w[6, 5:], audio[6].expand(6, D))


def test_sixty_second_clip_in_one_call_matches_per_frame_calls():
    torch.manual_seed(0)
    model = LipMotionTransformer(audio_dim=D, dropout=0.0).eval()  # paper size: d=256, 8 heads, 3 blocks
    g = torch.Generator().manual_seed(3)
    audio, ra, rm = (
        torch.randn(1500, D, generator=g),
        torch.randn(256, D, generator=g),
        torch.randn(256, 13, generator=g),
    )
    params, attn = model.predict_clip(audio, ra, rm, return_attention=True)
    assert params.shape == (1500, 13) and attn.shape == (1500, 256)
    torch.testing.assert_close(attn.sum(-1), torch.ones(1500), atol=1e-5, rtol=0)
    frames = [0, 1, 4, 5, 777, 1494, 1498, 1499]
    windows = model.make_windows(audio)
    with torch.no_grad():
        for t in frames:
            p, a = model(windows[t : t + 1], ra[None], rm[None], return_attention=True)
            torch.testing.assert_close(p[0], params[t], atol=1e-5, rtol=0)
            torch.testing.assert_close(a[0], attn[t], atol=1e-5, rtol=0)
    # Batches of 64 windows give the same numbers as one call (a 300-frame clip: its last 5 windows
    # are edge-padded differently from the 1500-frame clip's, so compare the 295 before them).
    chunked, attn_chunked = model.predict_clip(audio[:300], ra, rm, return_attention=True, batch_size=64)
    torch.testing.assert_close(chunked[:295], params[:295], atol=1e-5, rtol=0)
    torch.testing.assert_close(attn_chunked[:295], attn[:295], atol=1e-6, rtol=0)


def test_style_strength_blends_generic_and_reference_styles():
    model = small()
    audio = torch.randn(20, D)
    _, ra, rm = data(b=1, n=10)
    ra, rm = ra[0], rm[0]
    m_ref, _ = model.predict_clip(audio, ra, rm, style_strength=1.0)
    m_none, attn = model.predict_clip(audio, None, None, return_attention=True)
    assert attn is None
    m0, _ = model.predict_clip(audio, ra, rm, style_strength=0.0)
    m_half, _ = model.predict_clip(audio.numpy(), ra.numpy(), rm.numpy(), style_strength=0.5)
    torch.testing.assert_close(m0, m_none, atol=1e-6, rtol=0)
    torch.testing.assert_close(m_half, 0.5 * (m_ref + m_none), atol=1e-5, rtol=1e-5)
    assert (m_ref - m_none).abs().max() > 1e-4


def test_predict_clip_restores_training_mode_and_tracks_no_grad():
    model = small(dropout=0.1).train()
    audio = torch.randn(9, D)
    a, _ = model.predict_clip(audio)
    b, _ = model.predict_clip(audio)
    assert model.training and not a.requires_grad
    torch.testing.assert_close(a, b)  # eval mode inside: no dropout noise


def test_motion_loss_numbers():
    pred = torch.tensor([[1.0, 2.0, 3.0]])
    target = torch.tensor([[0.0, 2.0, 5.0]])
    basis = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # 3 params -> V*3 = 2 coordinates
    loss, parts = motion_loss(pred, target, basis, vertex_weight=10.0)
    # param L1: (1 + 0 + 2) / 3 = 1; vertex diff = [1,0,-2] @ basis = [-1, -2] -> L1 = 1.5
    assert parts["param_l1"].item() == pytest.approx(1.0)
    assert parts["vertex_l1"].item() == pytest.approx(1.5)
    assert loss.item() == pytest.approx(1.0 + 10.0 * 1.5)
    # The mouth mean cancels: vertices = mean + params @ basis.
    mean = torch.tensor([3.0, -7.0])
    direct = ((mean + pred @ basis) - (mean + target @ basis)).abs().mean()
    assert parts["vertex_l1"].item() == pytest.approx(direct.item())
    seq_loss, _ = motion_loss(torch.randn(2, 4, 3), torch.randn(2, 4, 3), basis)
    assert seq_loss.dim() == 0
    with pytest.raises(LipSyncInputError):
        motion_loss(pred, target, torch.zeros(4, 2))


def test_bf16_autocast_on_cpu_is_close_to_fp32():
    model = small()
    win, ra, rm = data()
    ref = model(win, ra, rm)
    with autocast_context("cpu", "bf16"):
        out, attn = model(win, ra, rm, return_attention=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.1)
    torch.testing.assert_close(attn.float().sum(-1), torch.ones(3), atol=1e-3, rtol=0)
    with pytest.raises(LipSyncInputError):
        autocast_context("cpu", "fp16")


def test_bad_inputs_get_clear_messages():
    model = small()
    win, ra, rm = data()
    with pytest.raises(LipSyncInputError, match="audio_windows"):
        model(win[:, :9], ra, rm)
    with pytest.raises(LipSyncInputError, match="ref_audio"):
        model(win, ra[:, :5], rm)
    with pytest.raises(LipSyncInputError, match="ref_audio is missing"):
        model(win, None, rm)
    with pytest.raises(LipSyncInputError, match="NaN"):
        model.predict_clip(np.full((4, D), np.nan, np.float32))
    with pytest.raises(LipSyncInputError, match="reference_mode"):
        LipMotionTransformer(audio_dim=D, reference_mode="bogus")


def test_feature_spec_is_checked():
    from lipsync_core.types import FeatureSpec

    spec = FeatureSpec("logmel", 16000, 160, D, {"n_mels": D})
    model = small(feature_spec=spec.to_dict())
    assert model.feature_spec_obj == spec
    model.check_feature_spec(spec)
    with pytest.raises(LipSyncInputError, match="trained on"):
        model.check_feature_spec(FeatureSpec("logmel", 22050, 160, D, {"n_mels": D}))
    with pytest.raises(LipSyncInputError, match="dims"):
        small().check_feature_spec(FeatureSpec("logmel", 16000, 160, D + 1))


def _phoneme_style_batch(g, emb, b=16, length=8, n=24, k=6):
    """Each clip is a new speaker with a random lip shape per phoneme; its reference shows every phoneme.

    Only a model that matches the input's sound to the reference's *audio* and reads the reference's
    *lips* there can predict the lips (the paper's audio-aware reference).
    """
    table = torch.randn(b, k, 13, generator=g)
    ph = torch.randint(0, k, (b, length), generator=g)
    ref_ph = (torch.arange(n) % k)[None].expand(b, n)
    ref_ph = torch.gather(ref_ph, 1, torch.argsort(torch.rand(b, n, generator=g), 1))
    audio = emb[ph] + 0.05 * torch.randn(b, length, emb.shape[1], generator=g)
    ref_audio = emb[ref_ph] + 0.05 * torch.randn(b, n, emb.shape[1], generator=g)
    target = torch.gather(table, 1, ph[..., None].expand(-1, -1, 13))
    ref_mouth = torch.gather(table, 1, ref_ph[..., None].expand(-1, -1, 13))
    return audio, ref_audio, ref_mouth, target, ph, ref_ph


@pytest.mark.slow
def test_only_the_audio_aware_reference_learns_a_speakers_style():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster than two fighting over a shared CPU
    try:
        _learn_speaker_styles()
    finally:
        torch.set_num_threads(threads)


def _learn_speaker_styles():
    errors, attention_on_same_sound = {}, None
    for mode in ("audio_aware", "lip_only", "none"):
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(1)
        emb = torch.randn(6, 8, generator=g)
        model = small(mode, audio_dim=8, reference_dropout=0.0, window=1).train()
        opt = torch.optim.Adam(model.parameters(), 2e-3)
        for _ in range(300):
            audio, ref_audio, ref_mouth, target, _, _ = _phoneme_style_batch(g, emb)
            loss, _ = motion_loss(model.forward_clips(audio, ref_audio, ref_mouth), target, None)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        audio, ref_audio, ref_mouth, target, ph, ref_ph = _phoneme_style_batch(torch.Generator().manual_seed(99), emb)
        with torch.no_grad():
            pred, attn = model.forward_clips(audio, ref_audio, ref_mouth, return_attention=True)
        errors[mode] = (pred - target).abs().mean().item()
        if mode == "audio_aware":
            same = (ph[..., None] == ref_ph[:, None, :]).float()  # [B, L, n]
            attention_on_same_sound = (attn * same).sum(-1).mean().item()
    # Speakers' lip shapes are N(0, 1): predicting the mean gives an L1 error of about 0.8.
    assert errors["audio_aware"] < 0.25, errors
    assert errors["lip_only"] > 0.5 and errors["none"] > 0.5, errors
    assert attention_on_same_sound > 0.7  # it looks up the reference frames that sound the same


def test_forward_clips_with_real_context_matches_windows_of_the_long_clip():
    model = small()
    audio = torch.randn(2, 30, D)
    _, ra, rm = data(b=2)
    out = model.forward_clips(audio, ra, rm, audio_has_context=True)  # frames 5..24 of each clip
    assert out.shape == (2, 20, 13)
    windows = model.make_windows(audio[1])[5:25]
    direct = model(windows, ra[1:2], rm[1:2])
    torch.testing.assert_close(out[1], direct, atol=1e-5, rtol=1e-5)
    with pytest.raises(LipSyncInputError, match="reference batch"):
        model(windows[:4], ra, rm)
