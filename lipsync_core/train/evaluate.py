"""``eval``: the paper's Table I quantities on a held-out prepared dataset, + weight-free sync checks.

- LipLMD: mean distance of the 40 lip points, predicted vs. ground-truth mouth params decoded through the
  same basis with the clip's own neutral face (aligned, IOD units: eye-centre distance = 1). The
  reference is what inference would take: the best voiced n-frame window of the speaker's *other* clips.
- PSNR / SSIM on the lower half of the face crop rendered by stage 2 from stage 1's prediction (crop level,
  before paste-back), for ``render_frames`` frames per clip.
- LPIPS, FID, SyncScore: need weights (LPIPS nets, Inception, SyncNet syncnet_v2); they are reported as
  "not computed" rather than guessed.
- Lip-audio offset: the lag at which the predicted mouth opening best follows the audio envelope
  (:mod:`lipsync_core.synthetic.sync_check`; positive = mouth later than sound), pooled over clips.
- Leakage: the share of silent frames (away from speech by ``leakage_margin_frames``) whose mouth is open
  (inner-lip gap above the closed level by more than a threshold), as KeySync / HighSync measure it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.io import load_model
from ..motion import MouthModel, lip_lmd
from ..render.settings import RenderSettings
from ..synthetic.sync_check import audio_envelope, lag_correlations
from ..types import DEFAULT_REFERENCE_FRAMES, LipMotion, LipSyncInputError
from .dataset import SAMPLE_RATE, load_dataset
from .motion import MotionClip, ReferencePool, motion_clips

PAPER_HDTF = {"LipLMD": 0.0108, "SyncScore": 6.02, "PSNR": 24.90, "SSIM": 0.85, "LPIPS": 0.089, "FID": 26.45}


@dataclass
class EvalOptions:
    reference_frames: int = DEFAULT_REFERENCE_FRAMES
    render_frames: int = 16
    steps: int = 20
    sampler: str = "dpmpp_2m"
    seed: int = 0
    guidance: float = RenderSettings.guidance
    leakage_threshold: float | None = None  # IOD units above the closed level; None: calibrated on the truth
    leakage_margin_frames: int = 1
    padded_silence_s: float = 1.0  # digital silence added before and after each clip for a second leakage test
    max_lag: int = 5
    syncnet: Path | None = None
    lpips: Path | None = None
    fid: Path | None = None
    device: str = "cpu"
    fidelity_videos: Path | None = None  # held-out puppet clips: the frame-level fidelity rows (train/fidelity.py)


def silent_frames(silence: np.ndarray, margin: int) -> np.ndarray:
    """Silent frames at least ``margin`` frames away from any speech frame."""
    speech = ~np.asarray(silence, bool)
    if margin <= 0 or not speech.any():
        return ~speech
    near = np.convolve(speech.astype(int), np.ones(2 * margin + 1, int), mode="same") > 0
    return ~near


def predict_params(model, pool: ReferencePool, index: int, n: int,
                   features: np.ndarray | None = None) -> np.ndarray:
    """Mouth params for clip ``index`` (or for other ``features``) with an n-frame reference of its speaker."""
    features = pool.clips[index].features if features is None else features
    if model.uses_reference and n > 0:
        ref_audio, ref_params = pool.eval_reference(index, n)
        pred, _ = model.predict_clip(features, ref_audio, ref_params)
    else:
        pred, _ = model.predict_clip(features)
    return pred.float().cpu().numpy()


def padded_silence_openness(model, mouth: MouthModel, pool: ReferencePool, index: int, n: int,
                            options: EvalOptions) -> np.ndarray:
    """Predicted mouth opening over digital silence added before and after the clip's audio (truth: closed)."""
    from ..stages import audio_features

    c = pool.clips[index]
    pad_frames = int(round(options.padded_silence_s * c.fps))
    pad = np.zeros(int(round(options.padded_silence_s * SAMPLE_RATE)), np.float32)
    wave = np.concatenate([pad, c.wave, pad])
    spec = model.feature_spec_obj
    if spec is None:
        raise LipSyncInputError("eval: the motion model records no audio feature spec; re-export it with train-motion.")
    feats = audio_features(wave, c.fps, len(c.params) + 2 * pad_frames, spec).features
    pred = predict_params(model, pool, index, n, feats)
    silent = np.r_[pred[:pad_frames - options.leakage_margin_frames], pred[len(pred) - pad_frames
                                                                           + options.leakage_margin_frames:]]
    return mouth.opening(silent, c.neutral)


def motion_metrics(model, mouth: MouthModel, clips: list[MotionClip], n: int, options: EvalOptions) -> dict:
    """LipLMD, lip-audio offset and leakage of a motion model (and of the ground truth) on clips."""
    pool = ReferencePool(clips)
    lmd_sum = frames = 0
    corr_pred = np.zeros(2 * options.max_lag + 1)
    corr_true = np.zeros_like(corr_pred)
    open_pred, open_true, closed_level, silent = [], [], [], []
    per_clip, pad_open = [], []
    for i, c in enumerate(clips):
        pred = predict_params(model, pool, i, n)
        u = c.usable
        lmd = lip_lmd(mouth.decode(pred[u], c.neutral), mouth.decode(c.params[u], c.neutral))
        lmd_sum += lmd * int(u.sum())
        frames += int(u.sum())
        op, ot = mouth.opening(pred, c.neutral), mouth.opening(c.params, c.neutral)
        env = audio_envelope(c.wave, SAMPLE_RATE, c.fps, len(c.params))
        if len(c.params) >= 2 * options.max_lag + 3:
            corr_pred += lag_correlations(op, env, options.max_lag) * len(c.params)
            corr_true += lag_correlations(ot, env, options.max_lag) * len(c.params)
        closed = float(np.quantile(ot[u], 0.05)) if u.any() else 0.0
        sil = silent_frames(c.silence, options.leakage_margin_frames) & u
        open_pred.append(op - closed)
        open_true.append(ot - closed)
        silent.append(sil)
        closed_level.append(closed)
        if options.padded_silence_s > 0:
            pad_open.append(padded_silence_openness(model, mouth, pool, i, n, options) - closed)
        per_clip.append({"key": c.key, "speaker": c.speaker, "frames": len(c.params), "lip_lmd": lmd})
    all_true = np.concatenate(open_true)
    speech = np.concatenate([~c.silence & c.usable for c in clips])
    threshold = options.leakage_threshold
    if threshold is None:  # a quarter of a typical open (speech) mouth: robust to the dataset's scale
        threshold = 0.25 * float(np.quantile(all_true[speech], 0.9)) if speech.any() else 0.05
    sil_all = np.concatenate(silent)

    def leak(openness: list[np.ndarray]) -> float | None:
        o = np.concatenate(openness)
        return float((o[sil_all] > threshold).mean()) if sil_all.any() else None

    lag_pred = int(np.argmax(corr_pred)) - options.max_lag
    lag_true = int(np.argmax(corr_true)) - options.max_lag
    return {
        "reference_frames": n if model.uses_reference else 0,
        "reference_mode": model.config.reference_mode,
        "lip_lmd": lmd_sum / max(frames, 1),
        "lip_audio_offset_frames": lag_pred,
        "lip_audio_offset_truth_frames": lag_true,
        "lip_audio_correlation": float(corr_pred.max() / max(sum(len(c.params) for c in clips), 1)),
        "leakage": leak(open_pred),
        "leakage_truth": leak(open_true),
        "leakage_threshold": threshold,
        "leakage_padded_silence": float((np.concatenate(pad_open) > threshold).mean()) if pad_open else None,
        "silent_frames": int(sil_all.sum()),
        "clips": len(clips),
        "frames": frames,
        "per_clip": per_clip,
    }


@torch.no_grad()
def render_metrics(models_dir: Path, mouth: MouthModel, data_dir, model, options: EvalOptions) -> dict:
    """PSNR / SSIM of the lower half of stage-2 crops rendered from stage-1 predictions.

    The appearance references are frames of the same clip (as inference takes them from the input video)
    at least 3 frames away from every rendered frame, so no frame can be copied from its reference. The
    VAE's own reconstruction of the same crops is reported next to it (``vae_psnr``): the renderer's ceiling;
    and the same frames rendered from the *true* mouth params (``psnr_true_motion``), which tells the
    renderer's share of the error from stage 1's. The crops are rendered by inference's own FrameRenderer.
    """
    from skimage.metrics import structural_similarity

    from ..models.bundle import LipSyncModels
    from ..render.conditioning import choose_reference_frames, frames_away_from
    from ..render.frames import FrameRenderer

    bundle = LipSyncModels(motion=model, renderer=load_model(models_dir / "renderer.safetensors", "renderer",
                                                             options.device),
                           mouth=mouth, vae=load_model(models_dir / "vae.safetensors", "vae", options.device))
    cfg = bundle.renderer.config
    codec = bundle.codec()
    settings = RenderSettings(sampler=options.sampler, steps=options.steps, seed=options.seed,
                              guidance=options.guidance)
    clips = load_dataset(data_dir, with_crops=True)
    mclips = motion_clips(clips, mouth)
    pool = ReferencePool(mclips)
    psnrs, ssims, vae_psnrs, oracle_psnrs = [], [], [], []
    for i, c in enumerate(clips):
        if c.crop_size != cfg.crop_size:
            raise LipSyncInputError(f"eval: data crops are {c.crop_size} px but the renderer takes {cfg.crop_size}.")
        a = c.analyse(mouth)
        pred = predict_params(model, pool, i, options.reference_frames)
        usable = np.flatnonzero(c.usable)
        if not len(usable):
            continue
        idx = usable[np.linspace(0, len(usable) - 1, min(options.render_frames, len(usable))).round().astype(int)]
        refs = choose_reference_frames(a.openness, frames_away_from(c.usable, idx), 3)
        crops = torch.from_numpy(c.crops[idx]).float() / 255.0
        out, oracle = (FrameRenderer(bundle, codec, a, LipMotion(params, c.fps), np.arange(len(a)),
                                     c.crops[refs].astype(np.float32) / 255.0, settings,
                                     reference_openness=a.openness[refs]).render_crops(crops, idx)
                       for params in (pred, a.params))
        recon = codec.decode(codec.encode(crops).to(options.device)).float().cpu().numpy()
        truth = crops.numpy()
        half = cfg.crop_size // 2
        for o, q, r, x in zip(out[:, half:], oracle[:, half:], recon[:, half:], truth[:, half:], strict=True):
            psnrs.append(_psnr(o, x))
            oracle_psnrs.append(_psnr(q, x))
            vae_psnrs.append(_psnr(r, x))
            ssims.append(float(structural_similarity(o, x, channel_axis=-1, data_range=1.0)))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
            "psnr_true_motion": float(np.mean(oracle_psnrs)), "vae_psnr": float(np.mean(vae_psnrs)),
            "rendered_frames": len(psnrs), "steps": options.steps, "sampler": options.sampler}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(float(((a - b) ** 2).mean()), 1e-10)))


def evaluate(models_dir: str | os.PathLike, data_dir: str | os.PathLike, options: EvalOptions | None = None,
             motion_path: str | os.PathLike | None = None) -> dict:
    options = options or EvalOptions()
    models_dir = Path(models_dir)
    mouth = MouthModel.load(models_dir / "mouth_model.safetensors")
    model = load_model(Path(motion_path) if motion_path else models_dir / "motion.safetensors", "motion",
                       options.device)
    clips = motion_clips(load_dataset(data_dir, min_frames=2), mouth)
    spec = model.feature_spec_obj
    first = load_dataset(data_dir)[0].spec
    if spec is not None:
        first.check_compatible(spec, "eval data")
    report: dict = {"models": str(models_dir), "data": str(data_dir), "options": _jsonable(asdict(options))}
    report["motion"] = motion_metrics(model, mouth, clips, options.reference_frames, options)
    render_ok = (models_dir / "renderer.safetensors").is_file() and (models_dir / "vae.safetensors").is_file()
    if options.render_frames > 0 and render_ok:
        report["render"] = render_metrics(models_dir, mouth, data_dir, model, options)
    else:
        report["render"] = None
    report["fidelity"] = None
    if options.fidelity_videos is not None and render_ok:
        from ..models.bundle import LipSyncModels
        from .fidelity import FidelityOptions, fidelity

        bundle = LipSyncModels.from_folder(models_dir, options.device)
        if motion_path:
            bundle.motion = model
        report["fidelity"] = fidelity(bundle, options.fidelity_videos,
                                      FidelityOptions(seed=options.seed))
    missing = {"LPIPS": ("lpips", options.lpips), "FID": ("fid", options.fid),
               "SyncScore": ("syncnet (syncnet_v2)", options.syncnet)}
    report["not_computed"] = {
        k: (f"not computed: no {what} weights given" if path is None else
            f"not computed: {what} weights given but this version does not wire them yet")
        for k, (what, path) in missing.items()
    }
    report["markdown"] = markdown_table(report)
    return report


def markdown_table(report: dict) -> str:
    m, r = report["motion"], report["render"]

    def f(x, digits=4):
        return "n/a" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))

    rows = [
        ("LipLMD (IOD units) ↓", f(m["lip_lmd"], 5), f"{PAPER_HDTF['LipLMD']} (paper's units)"),
        ("PSNR lower half ↑", f"{r['psnr']:.2f} (true motion: {r['psnr_true_motion']:.2f}; VAE alone: "
         f"{r['vae_psnr']:.2f})" if r else "not computed (no renderer)", PAPER_HDTF["PSNR"]),
        ("SSIM lower half ↑", f(r["ssim"], 3) if r else "not computed (no renderer)", PAPER_HDTF["SSIM"]),
        ("LPIPS ↓", report["not_computed"]["LPIPS"], PAPER_HDTF["LPIPS"]),
        ("FID ↓", report["not_computed"]["FID"], PAPER_HDTF["FID"]),
        ("SyncScore ↑", report["not_computed"]["SyncScore"], PAPER_HDTF["SyncScore"]),
        ("lip-audio offset (frames, + = mouth late)", f"{m['lip_audio_offset_frames']} "
         f"(truth {m['lip_audio_offset_truth_frames']})", "-"),
        ("leakage (open mouth in silence) ↓", f"{f(m['leakage'], 3)} (truth {f(m['leakage_truth'], 3)})", "-"),
        ("leakage over 1 s of added digital silence ↓", f(m["leakage_padded_silence"], 3), "-"),
    ]
    lines = [f"Held-out data: {report['data']} ({m['clips']} clips, {m['frames']} frames); reference n = "
             f"{m['reference_frames']} ({m['reference_mode']}); leakage threshold {m['leakage_threshold']:.4f} IOD, "
             f"{m['silent_frames']} silent frames.", "", "| metric | this model | paper, HDTF (Table I) |",
             "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    if report.get("fidelity"):
        from .fidelity import markdown as fidelity_markdown

        lines += ["", fidelity_markdown(report["fidelity"])]
    return "\n".join(lines) + "\n"


def _jsonable(d: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
