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
import time
from pathlib import Path

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
    p.add_argument("--chunk", type=int, default=d.chunk_size, help="frames rendered per batch (memory bound)")
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
