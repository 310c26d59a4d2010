"""Command-line entry: ``python -m lipsync_core <command>``.

- ``run``: lip-sync a video file to an audio file (optionally in another clip's style);
- ``demo``: the whole job on the committed puppet-world clip and demo weights;
- ``bench``: per-stage throughput and peak memory of the pipeline.

Bad input ends with one line naming the input and the fix (exit code 2), never a
traceback alone, and never a partial output file.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .types import LipSyncInputError

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_MODELS = PACKAGE_DIR / "assets" / "demo_models"
DEMO_CLIPS = PACKAGE_DIR / "assets" / "demo"


def _add_render_options(p: argparse.ArgumentParser) -> None:
    from .pipeline import RenderSettings
    from .render.sampling import SAMPLERS

    d = RenderSettings()
    p.add_argument("--steps", type=int, default=d.steps, help=f"denoising steps (default {d.steps})")
    p.add_argument("--sampler", choices=sorted(SAMPLERS), default=d.sampler)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--chunk", type=int, default=d.chunk_size,
                   help="frames per chunk, rounded up to blocks of 8 (memory, never the result)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=d.precision)
    p.add_argument("--models", type=Path, default=DEMO_MODELS, help="folder of the .safetensors models")
    p.add_argument("--length", default="trim_to_audio",
                   choices=("trim_to_audio", "trim_to_video", "loop", "ping_pong", "pad_silence"),
                   help="what to do when audio and video lengths differ")
    p.add_argument("--style-strength", type=float, default=1.0, help="0 = generic style, 1 = the reference's")


def _settings(args):
    from .pipeline import RenderSettings

    return RenderSettings(sampler=args.sampler, steps=args.steps, seed=args.seed, chunk_size=args.chunk,
                          precision=args.precision)


def _progress_bar():
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="frame", leave=True)
        bar.total = max(total, done)
        bar.n = done
        bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close


def cmd_run(args) -> int:
    from .pipeline import LipSyncModels, lipsync_file

    models = LipSyncModels.from_folder(args.models, args.device)
    update, close = _progress_bar()
    start = time.perf_counter()
    try:
        result = lipsync_file(
            args.video, args.audio, args.out, models, style_path=args.style, settings=_settings(args),
            length_policy=args.length, style_strength=args.style_strength, progress=update,
        )
    finally:
        close()
    seconds = time.perf_counter() - start
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {args.out}: {result.num_frames} frames at {result.fps:.3f} fps in {seconds:.1f} s "
          f"({result.num_frames / seconds:.2f} frames/s)")
    return 0


def _demo_inputs() -> dict[str, Path]:
    clips = {"video": DEMO_CLIPS / "video.mp4", "audio": DEMO_CLIPS / "target.wav",
             "style": DEMO_CLIPS / "reference.mp4", "truth_video": DEMO_CLIPS / "target.mp4",
             "truth": DEMO_CLIPS / "target.truth.npz"}
    missing = [str(p) for p in clips.values() if not p.is_file()]
    if missing:
        raise LipSyncInputError(f"demo: missing {missing[0]}; the demo clips ship with the repository (git checkout).")
    return clips


def _side_by_side(columns: list[np.ndarray]) -> np.ndarray:
    """Frames [T, H, W, 3] of several videos -> one strip per frame, each resized to the first's height."""
    import cv2

    h = columns[0].shape[1]
    resized = [c if c.shape[1] == h else np.stack([cv2.resize(f, (round(f.shape[1] * h / f.shape[0]), h),
                                                              interpolation=cv2.INTER_AREA) for f in c])
               for c in columns]
    return np.concatenate(resized, axis=2)


def _lip_lmd_vs_truth(models, result, truth_path: Path) -> float:
    """LipLMD of the predicted motion against the ground truth of the same person saying the new audio."""
    from .motion import lip_lmd

    truth = np.load(truth_path)["landmarks"]
    n = min(len(truth), len(result.motion))
    neutral = models.mouth.neutral_shape(result.track.landmarks[result.track.usable])
    true_params = models.mouth.encode(truth[:n], neutral=neutral)
    return lip_lmd(models.mouth.decode(result.motion.params[:n], neutral), models.mouth.decode(true_params, neutral))


def cmd_demo(args) -> int:
    from .media import VideoWriter, read_video
    from .pipeline import LipSyncModels, lipsync_file

    clips = _demo_inputs()
    args.out.mkdir(parents=True, exist_ok=True)
    result_path, strip_path = args.out / "result.mp4", args.out / "side_by_side.mp4"
    models = LipSyncModels.from_folder(args.models, args.device)
    update, close = _progress_bar()
    start = time.perf_counter()
    try:
        result = lipsync_file(clips["video"], clips["audio"], result_path, models, style_path=clips["style"],
                              settings=_settings(args), length_policy=args.length,
                              style_strength=args.style_strength, progress=update)
    finally:
        close()
    seconds = time.perf_counter() - start
    source, _ = read_video(clips["video"])
    output, _ = read_video(result_path)
    truth, _ = read_video(clips["truth_video"])
    n = min(len(output), len(truth))
    with VideoWriter(strip_path, result.fps, audio=result.wave, sample_rate=16000) as writer:
        writer.write(_side_by_side([source[result.frame_indices[:n]], output[:n], truth[:n]]))
    print(f"wrote {result_path} ({result.num_frames} frames at {result.fps:g} fps) in {seconds:.1f} s")
    print(f"wrote {strip_path}: input | output | ground truth")
    print(f"LipLMD of the predicted lips vs the ground truth: {_lip_lmd_vs_truth(models, result, clips['truth']):.4f} "
          "(inter-ocular units)")
    return 0


def cmd_bench(args) -> int:
    import resource

    from .pipeline import LipSyncModels, lipsync_file

    clips = _demo_inputs() if args.video is None else {"video": args.video, "audio": args.audio or args.video}
    models = LipSyncModels.from_folder(args.models, args.device)
    out = Path(tempfile.mkdtemp()) / "bench.mp4"
    start = time.perf_counter()
    result = lipsync_file(clips["video"], clips["audio"], out, models, style_path=clips.get("style"),
                          settings=_settings(args), length_policy=args.length)
    wall = time.perf_counter() - start
    out.unlink(missing_ok=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = result.num_frames
    print(f"{n} frames at {result.fps:g} fps, {args.steps} {args.sampler} steps, chunk {args.chunk}, "
          f"device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"{'stage':<26}{'seconds':>9}{'frames/s':>10}{'share':>8}")
    for stage, sec in sorted(result.seconds.items(), key=lambda kv: -kv[1]):
        print(f"{stage:<26}{sec:>9.2f}{n / max(sec, 1e-9):>10.1f}{sec / wall:>8.0%}")
    print(f"{'whole job':<26}{wall:>9.2f}{n / wall:>10.2f}{1:>8.0%}")
    print(f"peak resident memory: {peak_mb:.0f} MB")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lipsync_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="lip-sync a video to an audio track")
    run.add_argument("--video", type=Path, required=True, help="the video whose lower face is repainted")
    run.add_argument("--audio", type=Path, required=True, help="the new audio (wav/mp3/flac or a video's audio)")
    run.add_argument("--style", type=Path, help="a clip (video with audio) of the speaking style to keep; "
                                                 "default: the input video itself")
    run.add_argument("--out", type=Path, required=True, help="the output .mp4")
    _add_render_options(run)
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="the whole job on the committed puppet-world clips and demo weights")
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for result.mp4 and side_by_side.mp4")
    _add_render_options(demo)
    demo.set_defaults(func=cmd_demo)
    bench = sub.add_parser("bench", help="per-stage throughput and peak memory (default: on the demo clips)")
    bench.add_argument("--video", type=Path)
    bench.add_argument("--audio", type=Path)
    _add_render_options(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except LipSyncInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
