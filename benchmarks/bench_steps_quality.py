"""Denoising steps vs quality of the whole job, on held-out puppet clips (issue 6).

Each held-out clip is re-dubbed with its own audio, in the style of another clip of the
same speaker (self-reconstruction, as the paper evaluates), for each sampler and step
count. Two figures per setting, both measured on the *rendered video*:

- LipLMD: MediaPipe tracks the output frames; their lips, through the mouth model with
  the speaker's neutral face, against the ground-truth lips of the clip (IOD units);
- PSNR of the lower half of the face crop, output vs the original frames.

The default step count is the fewest steps whose LipLMD is within 5% of the 200-step
LipLMD (the paper's setting).

    python benchmarks/bench_steps_quality.py --clips DIR [--models DIR] [--max-clips 4]

DIR is a puppet dataset (``python -m lipsync_core.synthetic --out DIR ...``) of speakers the
models were not trained on, with at least two clips per speaker.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_core.audio import load_audio_file  # noqa: E402
from lipsync_core.cli import DEMO_MODELS  # noqa: E402
from lipsync_core.face import rescale_transforms, track_faces, warp_to_crops  # noqa: E402
from lipsync_core.media import ArrayFrames  # noqa: E402
from lipsync_core.motion import lip_lmd  # noqa: E402
from lipsync_core.pipeline import JobOptions, LipSyncModels, RenderSettings, lipsync  # noqa: E402
from lipsync_core.synthetic.io import list_clips, read_truth, read_video  # noqa: E402


def lower_half_psnr(out: np.ndarray, ref: np.ndarray, track, size: int = 128) -> float:
    """PSNR of the lower half of canonical face crops (``size`` px) of usable frames."""
    usable = track.usable
    transforms = rescale_transforms(track.crop_transforms, track.crop_size, size)
    a = warp_to_crops(out[usable], transforms[usable], size)[:, size // 2 :]
    b = warp_to_crops(ref[usable], transforms[usable], size)[:, size // 2 :]
    mse = float(((a - b) ** 2).mean())
    return 10 * np.log10(1.0 / max(mse, 1e-10))


def evaluate_setting(models: LipSyncModels, cases: list[dict], sampler: str, steps: int) -> dict:
    lmds, psnrs, start = [], [], time.perf_counter()
    frames_done = 0
    for case in cases:
        outputs: list[np.ndarray] = []
        sink = outputs.append
        result = lipsync(
            ArrayFrames(case["frames"], case["fps"]), case["wave"], models, lambda f, m, sink=sink: sink(f),
            style_video=ArrayFrames(case["style_frames"], case["fps"]), style_wave=case["style_wave"],
            options=JobOptions(settings=RenderSettings(sampler=sampler, steps=steps), length_policy="trim_to_video"),
        )
        out = np.concatenate(outputs)
        frames_done += len(out)
        track = result.track
        usable = track.usable
        psnrs.append(lower_half_psnr(out, case["frames"], track))
        rendered = track_faces(out, case["fps"], crop_size=track.crop_size)
        both = usable & rendered.usable
        mouth = models.mouth
        neutral = mouth.neutral_shape(case["truth"][usable])
        pred = mouth.decode(mouth.encode(rendered.landmarks[both], neutral=neutral), neutral)
        true = mouth.decode(mouth.encode(case["truth"][both], neutral=neutral), neutral)
        lmds.append(lip_lmd(pred, true))
    seconds = time.perf_counter() - start
    return {"liplmd": float(np.mean(lmds)), "psnr": float(np.mean(psnrs)), "frames_per_s": frames_done / seconds}


def load_cases(clips_dir: Path, max_clips: int) -> list[dict]:
    by_speaker = defaultdict(list)
    for row in list_clips(clips_dir):
        by_speaker[row["speaker_id"]].append(row)
    cases = []
    for rows in by_speaker.values():
        if len(rows) < 2:
            continue
        for i, row in enumerate(rows):
            style = rows[(i + 1) % len(rows)]
            frames, fps = read_video(row["video"])
            style_frames, _ = read_video(style["video"])
            cases.append({
                "name": f"{row['speaker_id']}/{row['clip_id']}", "frames": frames, "fps": fps,
                "wave": load_audio_file(row["wav"]), "style_frames": style_frames,
                "style_wave": load_audio_file(style["wav"]), "truth": read_truth(row["truth"])["landmarks"],
            })
            if len(cases) >= max_clips:
                return cases
    if not cases:
        sys.exit(f"{clips_dir}: no speaker with two clips; generate more clips per speaker.")
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, required=True, help="held-out puppet dataset folder")
    parser.add_argument("--models", type=Path, default=DEMO_MODELS)
    parser.add_argument("--max-clips", type=int, default=4)
    parser.add_argument("--samplers", nargs="+", default=["ddim", "dpmpp_2m"])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 25, 50, 200])
    args = parser.parse_args()
    models = LipSyncModels.from_folder(args.models)
    cases = load_cases(args.clips, args.max_clips)
    print(f"{len(cases)} held-out clips, {sum(len(c['frames']) for c in cases)} frames; models {args.models}")
    print(f"{'sampler':<10}{'steps':>6}{'LipLMD':>9}{'PSNR dB':>9}{'frames/s':>10}{'vs best':>9}")
    for sampler in args.samplers:
        rows = {steps: evaluate_setting(models, cases, sampler, steps) for steps in args.steps}
        best = rows[max(args.steps)]["liplmd"]
        for steps, r in rows.items():
            print(f"{sampler:<10}{steps:>6}{r['liplmd']:>9.4f}{r['psnr']:>9.2f}{r['frames_per_s']:>10.2f}"
                  f"{r['liplmd'] / best - 1:>+9.1%}", flush=True)
        within = [s for s in sorted(rows) if rows[s]["liplmd"] <= 1.05 * best]
        print(f"{sampler}: fewest steps within 5% of the {max(args.steps)}-step LipLMD: {within[0]}")


if __name__ == "__main__":
    main()
