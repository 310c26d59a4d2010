"""Checks that the puppet world is fit for purpose, with numbers (docs/PUPPET_WORLD.md reports them).

``python -m lipsync_core.synthetic.validate [--size 256] [--out report.json] [--only CHECK ...]`` measures:
- MediaPipe re-detection rate on generated frames and its lip-landmark error against the ground truth;
- style separation: distance between lip trajectories of two speakers saying the same sentence vs two
  renditions by one speaker (different head motion, lighting, rendition jitter), head-pose normalised;
- per-sound style separation: the same ratio per sound class (mean lip shape over the frames of each class),
  for a whole style swapped, for the global parameters alone swapped, and for what the global parameters
  do not explain (the whole style against its global parameters with the first speaker's per-sound style);
- out-of-plane head turn: re-detection and lip error with and without yaw/pitch on the same clips;
- audio-visual sync (best lag of mouth opening vs audio energy) and detection of a deliberate delay;
- generation speed (frames/s) and byte-identical reruns.
The test suite runs the same functions on smaller inputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import replace

import numpy as np

from ..face.topology import LIPS, RIGID
from .articulation import SOUND_CLASSES, frame_sound_classes
from .clip import PuppetClip, Speaker, generate_clip, make_speakers, mouth_geometry
from .identity import detect_mesh
from .rig import inter_ocular
from .sentences import make_sentences
from .sync_check import audio_envelope, best_lag, lag_correlations

LIP_IDX = np.asarray(LIPS)
CHECKS = ("tracking", "style", "per_sound", "head_turn", "sync", "reproducibility")
RIGID_IDX = np.asarray(RIGID)


def detect_landmarks(frames: np.ndarray, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe (static-image mode, every ``step``-th frame): meshes (N, 478, 3) and found flags (N,)."""
    picked = frames[::step]
    out = np.full((len(picked), 478, 3), np.nan, np.float32)
    found = np.zeros(len(picked), bool)
    for i, frame in enumerate(picked):
        mesh = detect_mesh(frame)
        if mesh is not None:
            out[i], found[i] = mesh, True
    return out, found


def lip_error(detected: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Lip-landmark error of detected vs true meshes (frames where a face was found), in % of inter-ocular distance."""
    ok = ~np.isnan(detected[:, 0, 0])
    if not ok.any():
        return {"lip_error_pct_iod": float("nan"), "opening_corr": float("nan")}
    d, t = detected[ok], truth[ok]
    iod = inter_ocular(t)
    err = np.linalg.norm(d[:, LIP_IDX, :2] - t[:, LIP_IDX, :2], axis=-1).mean(1) / iod
    g_det, g_true = mouth_geometry(d)["opening"], mouth_geometry(t)["opening"]
    corr = float(np.corrcoef(g_det, g_true)[0, 1]) if g_true.std() > 0 and g_det.std() > 0 else float("nan")
    return {
        "lip_error_pct_iod": float(100 * err.mean()),
        "lip_error_pct_iod_p95": float(100 * np.percentile(err, 95)),
        "opening_corr": corr,
        "opening_mae_pct_iod": float(100 * np.abs(g_det - g_true).mean()),
    }


def _similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (scale, rotation, translation) taking 2D points src onto dst (Umeyama)."""
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    u, sig, vt = np.linalg.svd(d0.T @ s0)
    e = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ e @ vt
    scale = float((sig * np.diag(e)).sum() / (s0**2).sum())
    return scale, r, md - scale * r @ ms


def normalised_lips(meshes: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Lip points (T, L, 2) after aligning each frame's rigid points onto ``template`` (478, 2+), in template IOD."""
    iod = float(inter_ocular(template[None])[0])
    out = np.empty((len(meshes), len(LIP_IDX), 2))
    for k, m in enumerate(meshes):
        s, r, t = _similarity_fit(m[RIGID_IDX, :2], template[RIGID_IDX, :2])
        out[k] = (s * m[LIP_IDX, :2] @ r.T + t) / iod
    return out


def trajectory_distance(a: np.ndarray, b: np.ndarray, samples: int = 100) -> float:
    """Mean point distance between two (T, L, 2) trajectories after resampling both to the same length."""

    def resample(x: np.ndarray) -> np.ndarray:
        src = np.linspace(0, 1, len(x))
        dst = np.linspace(0, 1, samples)
        flat = x.reshape(len(x), -1)
        out = np.stack([np.interp(dst, src, flat[:, j]) for j in range(flat.shape[1])], 1)
        return out.reshape(samples, *x.shape[1:])

    ra, rb = resample(a), resample(b)
    return float(np.linalg.norm(ra - rb, axis=-1).mean())


def style_separation(clips_a: tuple[PuppetClip, PuppetClip], clip_b: PuppetClip, detected: bool = False) -> dict:
    """Between-speaker vs within-speaker lip-trajectory distance (IOD units), on truth or on detected meshes."""

    def meshes(c: PuppetClip) -> np.ndarray:
        if not detected:
            return c.landmarks
        det, found = detect_landmarks(c.frames)
        det[~found] = c.landmarks[~found]  # keep the time axis; undetected frames are counted in the report
        return det

    template = clips_a[0].landmarks[0]
    a1, a2, b = (normalised_lips(meshes(c), template) for c in (*clips_a, clip_b))
    within = trajectory_distance(a1, a2)
    between = trajectory_distance(a1, b)
    return {"within": within, "between": between, "ratio": between / max(within, 1e-12)}


# Every sound class at least twice (f v, w oo o, ee i, a, t d s l, p b m).
PER_SOUND_TEXT = "Five brave wolves moved the blue boat. Peter sees the big fish at the party."


def clip_lips(clip: PuppetClip, template: np.ndarray, detected: bool = False) -> np.ndarray:
    """Normalised lip points (T, L, 2) of a clip: its true meshes, or the tracker's on its frames (misses: truth)."""
    meshes = clip.landmarks
    if detected:
        meshes, found = detect_landmarks(clip.frames)
        meshes[~found] = clip.landmarks[~found]
    return normalised_lips(meshes, template)


def class_shapes(clip: PuppetClip, lips: np.ndarray) -> np.ndarray:
    """(n_classes, L, 2) mean lip shape over the frames where each sound class is heard (NaN: never heard)."""
    labels = frame_sound_classes(clip.phonemes, clip.n_frames, clip.fps)
    out = np.full((len(SOUND_CLASSES), *lips.shape[1:]), np.nan)
    for k in range(len(SOUND_CLASSES)):
        if (labels == k).any():
            out[k] = lips[labels == k].mean(0)
    return out


def shape_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per class, the mean point distance between two (n_classes, L, 2) class shapes (IOD units)."""
    return np.linalg.norm(a - b, axis=-1).mean(-1)


def per_sound_pair(a: Speaker, b: Speaker, text: str, size: int, seeds: tuple[int, int] = (100, 900),
                   detected: bool = True) -> dict:
    """Per sound class, distances between mean lip shapes (IOD units) of clips with ``a``'s face and voice saying
    ``text``: ``a`` twice (within: two renditions), and with ``b``'s whole style ("whole") or ``b``'s global
    parameters on ``a``'s per-sound style ("globals"), each against ``a``'s first rendition; "residual" is
    "whole" against "globals": what ``b``'s global parameters alone do not explain. Ratios are over within.
    On the truth, and through the tracker if ``detected``."""
    sa, sb = a.style, b.style
    clips = {
        "a1": generate_clip(a, text, seed=seeds[0], size=size),
        "a2": generate_clip(a, text, seed=seeds[1], size=size),
        "whole": generate_clip(replace(a, style=sb), text, seed=seeds[0], size=size),
        "globals": generate_clip(replace(a, style=sb.global_only().with_sounds_of(sa)), text, seed=seeds[0],
                                 size=size),
    }
    template = clips["a1"].landmarks[0]
    out = {}
    for kind in ("truth", "detected") if detected else ("truth",):
        shapes = {k: class_shapes(c, clip_lips(c, template, kind == "detected")) for k, c in clips.items()}
        within = shape_distance(shapes["a1"], shapes["a2"])
        sep: dict = {"within": within.tolist()}
        for name, (x, y) in {"whole": ("a1", "whole"), "globals": ("a1", "globals"),
                             "residual": ("globals", "whole")}.items():
            between = shape_distance(shapes[x], shapes[y])
            sep[name] = {"between": between.tolist(), "ratio": (between / np.maximum(within, 1e-12)).tolist()}
        out[kind] = sep
    return out


def summarise_per_sound(pairs: list[dict]) -> dict:
    """Median over speaker pairs, per class and per comparison (NaN-safe: a class a sentence lacks is skipped)."""
    out: dict = {}
    for kind in pairs[0]:
        rows = [p[kind] for p in pairs]
        table = {"within": dict(zip(SOUND_CLASSES, np.nanmedian([r["within"] for r in rows], 0).round(4).tolist(),
                                    strict=True))}
        for name in ("whole", "globals", "residual"):
            ratio = np.asarray([r[name]["ratio"] for r in rows])
            table[name] = {
                "between": dict(zip(SOUND_CLASSES, np.nanmedian([r[name]["between"] for r in rows], 0).round(4)
                                    .tolist(), strict=True)),
                "ratio_median": dict(zip(SOUND_CLASSES, np.nanmedian(ratio, 0).round(2).tolist(), strict=True)),
                "ratio_min": dict(zip(SOUND_CLASSES, np.nanmin(ratio, 0).round(2).tolist(), strict=True)),
            }
        out[kind] = table
    return out


def sync_lags(clip: PuppetClip, delayed: PuppetClip, max_lag: int = 6) -> dict:
    out = {}
    for name, c in (("in_sync", clip), ("delayed_3", delayed)):
        env = audio_envelope(c.audio, c.sample_rate, c.fps, c.n_frames)
        opening = mouth_geometry(c.landmarks)["opening"]
        corr = lag_correlations(opening, env, max_lag)
        out[name] = {"best_lag": best_lag(opening, env, max_lag), "corr_at_best": float(corr.max()),
                     "corr": [round(float(x), 3) for x in corr]}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lipsync_core.synthetic.validate", description=__doc__)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--speakers", type=int, default=6)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--out", default=None, help="write the report as JSON here")
    p.add_argument("--only", nargs="+", choices=CHECKS, default=list(CHECKS), help="run only these checks")
    args = p.parse_args(argv)
    report: dict = {"size": args.size, "speakers": args.speakers, "seed": args.seed}
    speakers = make_speakers(args.speakers, args.seed)
    sentences = make_sentences(3, args.seed)
    run = set(args.only)

    clips: list[PuppetClip] = []
    if run & {"tracking", "style", "head_turn"}:  # speed: the first clip warms the identity cache; time the rest
        generate_clip(speakers[0], sentences[0], seed=0, size=args.size)
        t0, frames = time.perf_counter(), 0
        for i, sp in enumerate(speakers):
            c = generate_clip(sp, sentences[0], seed=100 + i, size=args.size)
            clips.append(c)
            frames += c.n_frames
        report["speed_fps"] = frames / (time.perf_counter() - t0)
        report["speed_frames"] = frames

    if run & {"tracking", "head_turn"}:  # re-detection and lip error (with the head turning out of plane)
        det_rates, errs = [], []
        for c in clips:
            det, found = detect_landmarks(c.frames)
            det_rates.append(found.mean())
            errs.append(lip_error(det, c.landmarks))
        report["redetection_rate"] = float(np.mean(det_rates))
        report["redetection_rate_min_clip"] = float(np.min(det_rates))
        report["lip"] = {k: float(np.nanmean([e[k] for e in errs])) for k in errs[0]}

    if "style" in run:  # speakers i and i+1 on the same sentence; speaker i twice with other head motion/lighting
        sep_truth, sep_det, sep_style_only, sep_style_only_truth = [], [], [], []
        for i in range(0, len(speakers) - 1, 2):
            a1 = clips[i]
            a2 = generate_clip(speakers[i], sentences[0], seed=900 + i, size=args.size)
            b = clips[i + 1]
            sep_truth.append(style_separation((a1, a2), b))
            sep_det.append(style_separation((a1, a2), b, detected=True))
            # the same face and voice with another style: style alone must separate
            other = dataclasses.replace(speakers[i], style=speakers[i + 1].style)
            b_style = generate_clip(other, sentences[0], seed=100 + i, size=args.size)
            sep_style_only.append(style_separation((a1, a2), b_style, detected=True))
            sep_style_only_truth.append(style_separation((a1, a2), b_style))
        for name, rows in (("truth", sep_truth), ("detected", sep_det), ("truth_style_only", sep_style_only_truth),
                           ("detected_style_only", sep_style_only)):
            report[f"style_{name}"] = {
                "within_mean": float(np.mean([r["within"] for r in rows])),
                "between_mean": float(np.mean([r["between"] for r in rows])),
                "ratio_min": float(np.min([r["ratio"] for r in rows])),
                "ratio_median": float(np.median([r["ratio"] for r in rows])),
            }

    if "per_sound" in run:  # per class: whole style / global parameters alone / what they do not explain
        pairs = [per_sound_pair(speakers[i], speakers[i + 1], PER_SOUND_TEXT, args.size)
                 for i in range(0, len(speakers) - 1, 2)]
        report["per_sound"] = {"text": PER_SOUND_TEXT, "classes": list(SOUND_CLASSES), "pairs": len(pairs),
                               **summarise_per_sound(pairs)}

    if "head_turn" in run:  # the same clips with the head turning in the image plane only
        det_flat, err_flat = [], []
        for i, sp in enumerate(speakers):
            flat = generate_clip(sp, sentences[0], seed=100 + i, size=args.size, head_turn=0.0)
            det, found = detect_landmarks(flat.frames)
            det_flat.append(found.mean())
            err_flat.append(lip_error(det, flat.landmarks))
        poses = np.concatenate([np.abs(c.head_pose) for c in clips])
        report["head_turn"] = {
            "yaw_abs_max_deg": float(poses[:, 0].max()), "pitch_abs_max_deg": float(poses[:, 1].max()),
            "yaw_abs_p95_deg": float(np.percentile(poses[:, 0], 95)),
            "pitch_abs_p95_deg": float(np.percentile(poses[:, 1], 95)),
            "without_turn": {"redetection_rate": float(np.mean(det_flat)),
                             "lip": {k: float(np.nanmean([e[k] for e in err_flat])) for k in err_flat[0]}},
        }

    if "sync" in run:
        long_text = " ".join(make_sentences(4, args.seed + 1))
        lags = []
        for sp in speakers[:3]:
            c = generate_clip(sp, long_text, seed=5, size=96)
            d = generate_clip(sp, long_text, seed=5, size=96, audio_delay_frames=3)
            lags.append(sync_lags(c, d))
        report["sync"] = lags

    if "reproducibility" in run:
        x = generate_clip(speakers[0], sentences[1], seed=77, size=args.size)
        y = generate_clip(speakers[0], sentences[1], seed=77, size=args.size)
        report["byte_identical"] = bool(np.array_equal(x.frames, y.frames) and np.array_equal(x.audio, y.audio)
                                        and np.array_equal(x.landmarks, y.landmarks))
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
