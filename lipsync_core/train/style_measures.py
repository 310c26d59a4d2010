"""Two measurements the paper lacks, on the ablation's stage-1 models: style strength and style transfer.

    python -m lipsync_core.train.style_measures --work /tmp/ablation [--seeds 0 1 2] [--n 256]

reads the models ``WORK/<variant>_seed<seed>/motion.safetensors`` (missing ones are skipped) and the held-out
data the ablation used (``ablation.json``, or ``--data``) and writes ``style_measures.json`` / ``.md``.

- **Style strength.** LipLMD to the held-out speaker's truth with s in {0, 0.5, 1}: the prediction is
  m_none + s (m_ref - m_none) (``MotionModel.predict_clip``); with a reference of the speaker's own style it
  should fall as s rises.
- **Style transfer.** Speaker A's audio with speaker B's reference (every ordered pair of held-out speakers,
  n frames, the best voiced window of B's clips as inference picks it). Per sound class c (the puppet world's
  viseme classes, heard at each frame from the clip's phoneme timeline) the predicted lips' mean shape S_AB,c
  is compared with A's and B's true mean shapes T_A,c and T_B,c (over all their held-out clips), all decoded
  on A's neutral face (lip points, aligned IOD units):
  * *nearer B*: the share of (pair, class) where |S_AB,c - T_B,c| < |S_AB,c - T_A,c|;
  * *position* t = <S_AB,c - T_A,c, T_B,c - T_A,c> / |T_B,c - T_A,c|^2 over the lip points: 0 = A's articulation
    of the sound, 1 = B's; the same for A's own reference (S_AA) is the control, and t_AB - t_AA is how far
    B's reference moves the lips towards B's way of saying the sounds. The ``none`` model moves nothing
    (t_AB = t_AA) by construction.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..models.io import load_model
from ..motion import MouthModel
from ..motion.mouth_model import lip_lmd, lip_vertices
from ..style import choose_reference_window
from ..synthetic.articulation import SOUND_CLASSES, frame_sound_classes
from ..synthetic.tts import Phoneme
from .dataset import CLIPS_DIR, load_basis, load_dataset
from .evaluate import predict_params
from .motion import MotionClip, ReferencePool, motion_clips

STRENGTHS = (0.0, 0.5, 1.0)
N_CLASSES = len(SOUND_CLASSES)


def sound_labels(data_dir: Path, clip: MotionClip) -> np.ndarray:
    """(T,) the sound class heard at each frame of a prepared puppet clip (-1: none), from its video's phonemes."""
    meta = json.loads((data_dir / CLIPS_DIR / f"{clip.key}.json").read_text())
    video = json.loads(Path(meta["source"]).with_suffix(".json").read_text())
    phonemes = [Phoneme(p["symbol"], p["start"], p["end"]) for p in video["phonemes"]]
    return frame_sound_classes(phonemes, len(clip.params), clip.fps)


def class_means(params: list[np.ndarray], labels: list[np.ndarray], usable: list[np.ndarray]) -> np.ndarray:
    """(N_CLASSES, K) mean mouth params over the usable frames of each class (NaN: never heard)."""
    p = np.concatenate(params)
    lab = np.concatenate(labels)
    ok = np.concatenate(usable)
    out = np.full((N_CLASSES, p.shape[1]), np.nan)
    for c in range(N_CLASSES):
        sel = ok & (lab == c)
        if sel.any():
            out[c] = p[sel].mean(0)
    return out


def speaker_reference(pool: ReferencePool, speaker: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-frame reference inference would cut from all of ``speaker``'s clips (the best voiced window)."""
    idx = pool.speakers[speaker]
    clips = [pool.clips[i] for i in idx]
    audio = np.concatenate([c.features for c in clips])
    params = np.concatenate([c.params for c in clips])
    usable = np.concatenate([c.usable for c in clips])
    speech = ~np.concatenate([c.silence for c in clips])
    sel = choose_reference_window(usable, speech, n)
    return audio[sel], params[sel]


def style_strength(model, mouth: MouthModel, clips: list[MotionClip], n: int) -> dict[float, float]:
    """LipLMD (usable frames, IOD units) with the speaker's own n-frame reference at each style strength s."""
    pool = ReferencePool(clips)
    sums = dict.fromkeys(STRENGTHS, 0.0)
    frames = 0
    for i, c in enumerate(clips):
        ref_audio, ref_params = pool.eval_reference(i, n)
        u = c.usable
        truth = mouth.decode(c.params[u], c.neutral)
        for s in STRENGTHS:
            pred, _ = model.predict_clip(c.features, ref_audio, ref_params, style_strength=s)
            sums[s] += lip_lmd(mouth.decode(pred.float().cpu().numpy()[u], c.neutral), truth) * int(u.sum())
        frames += int(u.sum())
    return {s: sums[s] / max(frames, 1) for s in STRENGTHS}


def _lips(mouth: MouthModel, params: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    return lip_vertices(mouth.decode(params[None].astype(np.float32), neutral))[0].astype(np.float64)


def style_transfer(model, mouth: MouthModel, clips: list[MotionClip], labels: list[np.ndarray], n: int) -> dict:
    """A's audio with B's reference for every ordered pair of speakers (see the module docstring)."""
    pool = ReferencePool(clips)
    speakers = sorted(pool.speakers)
    truth = {s: class_means([clips[i].params for i in pool.speakers[s]], [labels[i] for i in pool.speakers[s]],
                            [clips[i].usable for i in pool.speakers[s]]) for s in speakers}
    refs = {s: speaker_reference(pool, s, n) for s in speakers} if model.uses_reference else {}
    own = {}  # A's audio with A's own reference (the control), per speaker
    for a in speakers:
        idx = pool.speakers[a]
        preds = [predict_params(model, pool, i, n) for i in idx]
        own[a] = class_means(preds, [labels[i] for i in idx], [clips[i].usable for i in idx])
    rows = []
    for a in speakers:
        idx = pool.speakers[a]
        neutral = clips[idx[0]].neutral
        for b in speakers:
            if a == b:
                continue
            if model.uses_reference:
                preds = [model.predict_clip(clips[i].features, *refs[b])[0].float().cpu().numpy() for i in idx]
                moved = class_means(preds, [labels[i] for i in idx], [clips[i].usable for i in idx])
            else:
                moved = own[a]
            for c in range(N_CLASSES):
                if np.isnan(moved[c]).any() or np.isnan(truth[b][c]).any() or np.isnan(truth[a][c]).any():
                    continue
                ta, tb = _lips(mouth, truth[a][c], neutral), _lips(mouth, truth[b][c], neutral)
                sab, saa = _lips(mouth, moved[c], neutral), _lips(mouth, own[a][c], neutral)
                axis = tb - ta
                norm = float((axis**2).sum())
                rows.append({
                    "a": a, "b": b, "class": list(SOUND_CLASSES)[c],
                    "d_to_b": float(np.linalg.norm(sab - tb, axis=-1).mean()),
                    "d_to_a": float(np.linalg.norm(sab - ta, axis=-1).mean()),
                    "t_ab": float(((sab - ta) * axis).sum() / norm), "t_aa": float(((saa - ta) * axis).sum() / norm),
                    "ab_distance": float(np.linalg.norm(axis, axis=-1).mean()),
                })
    nearer = np.mean([r["d_to_b"] < r["d_to_a"] for r in rows])
    t_ab, t_aa = np.array([r["t_ab"] for r in rows]), np.array([r["t_aa"] for r in rows])
    per_class = {name: float(np.mean([r["t_ab"] - r["t_aa"] for r in rows if r["class"] == name]))
                 for name in SOUND_CLASSES if any(r["class"] == name for r in rows)}
    return {"pairs": len(speakers) * (len(speakers) - 1), "cases": len(rows), "nearer_b": float(nearer),
            "t_ab_mean": float(t_ab.mean()), "t_aa_mean": float(t_aa.mean()),
            "shift_mean": float((t_ab - t_aa).mean()), "shift_median": float(np.median(t_ab - t_aa)),
            "shift_per_class": per_class, "rows": rows}


def run(work: Path, variants: tuple[str, ...], seeds: tuple[int, ...], n: int, data: Path | None = None,
        out_dir: Path | None = None) -> dict:
    if data is None:
        info = json.loads((work / "ablation.json").read_text())
        d_train, d_test = Path(info["train"]), Path(info["test"])
    else:
        d_train, d_test = data / "data_train", data / "data_test"
    mouth = load_basis(d_train)
    clips = motion_clips(load_dataset(d_test, min_frames=2), mouth)
    labels = [sound_labels(d_test, c) for c in clips]
    out: dict = {"work": str(work), "test": str(d_test), "n": n, "seeds": list(seeds), "runs": []}
    for seed in seeds:
        for variant in variants:
            path = work / f"{variant}_seed{seed}" / "motion.safetensors"
            if not path.is_file():
                continue
            model = load_model(path, "motion")
            row: dict = {"variant": variant, "seed": seed}
            if model.uses_reference:
                row["strength"] = {str(s): v for s, v in style_strength(model, mouth, clips, n).items()}
            transfer = style_transfer(model, mouth, clips, labels, n)
            row["transfer"] = {k: v for k, v in transfer.items() if k != "rows"}
            out["runs"].append(row)
            print(json.dumps(row), flush=True)
    out["markdown"] = markdown(out)
    out_dir = out_dir or work
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "style_measures.json").write_text(json.dumps(out, indent=1))
    (out_dir / "style_measures.md").write_text(out["markdown"])
    print(out["markdown"])
    return out


def _ms(values: list[float], digits: int = 5) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.{digits}f}" + (f" ± {v.std():.{digits}f}" if len(v) > 1 else "")


def markdown(out: dict) -> str:
    runs = out["runs"]
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    lines = [f"Style strength (n = {out['n']}, the speaker's own reference; LipLMD, mean ± std over seeds "
             f"{seeds}):", "", "| variant | s = 0 | s = 0.5 | s = 1 | seeds where it falls 0 > 0.5 > 1 |",
             "|---|---|---|---|---|"]
    for v in variants:
        rs = [r for r in runs if r["variant"] == v and "strength" in r]
        if not rs:
            continue
        cells = [_ms([r["strength"][str(s)] for r in rs]) for s in STRENGTHS]
        falls = sum(r["strength"]["0.0"] > r["strength"]["0.5"] > r["strength"]["1.0"] for r in rs)
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {falls} of {len(rs)} |")
    lines += ["", f"Style transfer (A's audio, B's reference, n = {out['n']}; every ordered pair of held-out "
              "speakers x sound class; t: 0 = A's articulation of the sound, 1 = B's):", "",
              "| variant | nearer B than A | t (B's reference) | t (A's own reference) | shift t_AB - t_AA | "
              "seeds with shift > 0 |", "|---|---|---|---|---|---|"]
    for v in variants:
        rs = [r["transfer"] for r in runs if r["variant"] == v]
        shift_pos = sum(r["shift_mean"] > 0 for r in rs)
        lines.append(f"| {v} | {_ms([r['nearer_b'] for r in rs], 3)} | {_ms([r['t_ab_mean'] for r in rs], 3)} | "
                     f"{_ms([r['t_aa_mean'] for r in rs], 3)} | {_ms([r['shift_mean'] for r in rs], 3)} | "
                     f"{shift_pos} of {len(rs)} |")
    cases = runs[0]["transfer"]["cases"] if runs else 0
    lines += ["", f"{cases} (pair, class) cases per model; shift per class (mean over seeds):", "",
              "| variant | " + " | ".join(SOUND_CLASSES) + " |", "|---|" + "---|" * N_CLASSES]
    for v in variants:
        rs = [r["transfer"]["shift_per_class"] for r in runs if r["variant"] == v]
        cells = [f"{np.mean([r[c] for r in rs if c in r]):.3f}" if any(c in r for r in rs) else "-"
                 for c in SOUND_CLASSES]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lipsync_core.train.style_measures", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="an ablation work folder (ablation.json, models)")
    p.add_argument("--variants", nargs="+", default=["audio_aware", "lip_only", "audio_aware_varlen", "none"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n", type=int, default=256, help="reference frames")
    p.add_argument("--data", type=Path, help="the folder holding data_train/ and data_test/ (default: as ablation.json "
                   "says)")
    p.add_argument("--out", type=Path, help="write style_measures.json/.md here (default: WORK)")
    args = p.parse_args(argv)
    run(args.work, tuple(args.variants), tuple(args.seeds), args.n, args.data, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
