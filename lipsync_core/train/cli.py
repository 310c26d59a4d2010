"""``python -m lipsync_core.train <command>``: prepare, fit-basis, train-vae, train-motion, train-renderer, eval.

Training commands run on one CPU/GPU with plain ``python`` and on several GPUs / nodes / CPU processes with
``accelerate launch [--num_processes N] -m lipsync_core.train <command> ...``. See docs/TRAINING.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..types import DEFAULT_REFERENCE_FRAMES, LipSyncInputError


def _train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="prepared dataset folder (from `prepare`)")
    p.add_argument("--out", required=True, type=Path, help="output folder: checkpoints, logs, the exported model")
    p.add_argument("--preset", default="demo", choices=("demo", "full"),
                   help="hyper-parameters: 'full' = the paper's, 'demo' = the small CPU recipe")
    p.add_argument("--steps", type=int, help="optimizer steps (overrides the preset)")
    p.add_argument("--batch-size", type=int, help="samples per step and process")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", help="'latest' or a checkpoint folder to continue from")
    p.add_argument("--mixed-precision", choices=("auto", "no", "fp16", "bf16"), default="auto",
                   help="auto: bf16/fp16 on GPU, fp32 on CPU")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    p.add_argument("--log-every", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config or model setting, JSON values (e.g. --set reference_mode=\"lip_only\")")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _config(cls, args):
    from .common import apply_overrides, parse_overrides

    config = cls.preset(args.preset)
    direct = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
              "log_every": args.log_every, "checkpoint_every": args.checkpoint_every,
              "mixed_precision": None if args.mixed_precision == "auto" else args.mixed_precision,
              "cpu": args.cpu or None}
    return apply_overrides(config, {**{k: v for k, v in direct.items() if v is not None}, **parse_overrides(args.set)})


def cmd_prepare(args) -> int:
    from .prepare import PrepareOptions, prepare

    summary = prepare(args.videos, args.out, PrepareOptions(crop_size=args.crop_size, landmarks=args.landmarks),
                      workers=args.workers, progress=not args.quiet)
    return 0 if summary["clips"] else 1


def cmd_fit_basis(args) -> int:
    from .basis import fit_basis

    fit_basis(args.data, args.out, identity_dim=args.identity_dim)
    return 0


def cmd_train_motion(args) -> int:
    from .motion import MotionTrainConfig, train_motion

    train_motion(args.data, args.out, _config(MotionTrainConfig, args), args.basis, args.resume, not args.quiet)
    return 0


def cmd_train_vae(args) -> int:
    from .vae import VAETrainConfig, train_vae

    train_vae(args.data, args.out, _config(VAETrainConfig, args), args.resume, not args.quiet)
    return 0


def cmd_train_renderer(args) -> int:
    from .renderer import RendererTrainConfig, train_renderer

    train_renderer(args.data, args.out, _config(RendererTrainConfig, args), args.vae, args.basis, args.resume,
                   not args.quiet, init=args.init)
    return 0


def cmd_eval(args) -> int:
    from .evaluate import EvalOptions, evaluate

    options = EvalOptions(reference_frames=args.reference_frames, render_frames=args.render_frames,
                          steps=args.steps, sampler=args.sampler, leakage_threshold=args.leakage_threshold,
                          syncnet=args.syncnet, lpips=args.lpips, fid=args.fid, device=args.device,
                          fidelity_videos=args.videos)
    report = evaluate(args.models, args.data, options, args.motion)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
        args.out.with_suffix(".md").write_text(report["markdown"])
    print(report["markdown"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lipsync_core.train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="videos with audio -> a training dataset")
    p.add_argument("videos", type=Path, help="folder of videos (speaker = sub-folder) or one video")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--crop-size", type=int, default=256)
    p.add_argument("--landmarks", default="track", choices=("track", "truth", "auto"),
                   help="track (MediaPipe, any video) or the puppet clips' exact .truth.npz mesh")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("fit-basis", help="fit the 13-param mouth model on prepared clips")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", type=Path, help="file or folder (default DATA/mouth_model.safetensors)")
    p.add_argument("--identity-dim", type=int, default=16)
    p.set_defaults(func=cmd_fit_basis)

    for name, func, help_text in (("train-motion", cmd_train_motion, "stage 1: the style-aware motion Transformer"),
                                  ("train-vae", cmd_train_vae, "the demo's small AutoencoderKL on the crops"),
                                  ("train-renderer", cmd_train_renderer, "stage 2: the lower-half diffusion U-Net")):
        p = sub.add_parser(name, help=help_text)
        _train_options(p)
        if name != "train-vae":
            p.add_argument("--basis", type=Path, help="mouth_model.safetensors (default DATA/mouth_model.safetensors)")
        if name == "train-renderer":
            p.add_argument("--vae", required=True, type=Path,
                           help="vae.safetensors from train-vae, or a diffusers AutoencoderKL folder / file")
            p.add_argument("--init", type=Path, help="a renderer.safetensors to fine-tune from (its architecture, "
                                                     "latent scale and motion statistics are kept; fresh optimiser "
                                                     "and learning-rate schedule, unlike --resume)")
        p.set_defaults(func=func)

    p = sub.add_parser("eval", help="Table I quantities on a held-out prepared dataset")
    p.add_argument("--models", required=True, type=Path, help="folder with motion/renderer/mouth_model/vae files")
    p.add_argument("--data", required=True, type=Path, help="held-out prepared dataset")
    p.add_argument("--motion", type=Path, help="another motion.safetensors to evaluate (ablations)")
    p.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    p.add_argument("--reference-frames", type=int, default=DEFAULT_REFERENCE_FRAMES,
                   help=f"style reference length n (default {DEFAULT_REFERENCE_FRAMES}, the paper's)")
    p.add_argument("--render-frames", type=int, default=16, help="frames per clip rendered for PSNR/SSIM (0: none)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--leakage-threshold", type=float, default=None,
                   help="inner-lip gap (IOD units) above which a mouth counts as open (default: calibrated)")
    p.add_argument("--syncnet", type=Path, help="syncnet_v2 weights (SyncScore); not computed without")
    p.add_argument("--lpips", type=Path, help="LPIPS weights; not computed without")
    p.add_argument("--fid", type=Path, help="Inception weights for FID; not computed without")
    p.add_argument("--videos", type=Path,
                   help="held-out puppet clips (with .truth.npz): add the frame-level fidelity rows "
                        "(benchmarks/bench_fidelity.py)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LipSyncInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
