"""Speed of the two models on this machine.

Prints:
- stage 1: frames per second of ``LipMotionTransformer.predict_clip`` (paper size: d=256, 8 heads,
  3 decoder blocks) on a clip of ``--frames`` frames with an ``--ref``-frame reference, and the
  multiple of real time at ``--fps``;
- stage 2: milliseconds per frame per denoising step of ``LipRenderUNet`` (the default config and a
  larger "paper-scale" preset) at each ``--latent-sizes`` with batch ``--batch``, and of a
  LatentSync-1.5-shaped ``UNet2DConditionModel`` (SD 1.5 block layout, 13 input channels,
  cross-attention dim 384, random weights) at the same latent size, with the ratio ours / LatentSync.

    python benchmarks/bench_models.py                       # the full run (minutes on a CPU)
    python benchmarks/bench_models.py --frames 200 --ref 64 --latent-sizes 16 --batch 2 --repeats 1  # CI-sized
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from timing import best_of  # noqa: E402

from lipsync_core.models.motion import LipMotionTransformer  # noqa: E402
from lipsync_core.models.precision import autocast_context  # noqa: E402
from lipsync_core.models.renderer import LipRenderUNet  # noqa: E402

PAPER_SCALE_RENDERER = dict(
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    cross_attention_levels=(False, True, True, True),
    attention_head_dim=64,
)


def bench_stage1(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = LipMotionTransformer(audio_dim=args.audio_dim).eval()
    audio = torch.randn(args.frames, args.audio_dim)
    ref_audio, ref_mouth = torch.randn(args.ref, args.audio_dim), torch.randn(args.ref, 13)
    print(
        f"stage 1: LipMotionTransformer d=256 heads=8 blocks=3, T={args.frames} frames, n={args.ref}, "
        f"D={args.audio_dim}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params"
    )
    cases = [
        ("reference, s=1", dict(style_strength=1.0)),
        ("reference, s=1, attention", dict(style_strength=1.0, return_attention=True)),
        ("reference, s=0.5 (two passes)", dict(style_strength=0.5)),
    ]
    for name, kw in cases:
        seconds, _ = best_of(lambda kw=kw: model.predict_clip(audio, ref_audio, ref_mouth, **kw), args.repeats,
                             args.warmup)
        fps = args.frames / seconds
        print(
            f"  {name:32s} {seconds * 1000:9.1f} ms/clip  {fps:9.0f} frames/s  {fps / args.fps:6.1f}x real time"
            f" at {args.fps:g} fps"
        )
    if args.bf16:
        with autocast_context("cpu", "bf16"):
            seconds, _ = best_of(lambda: model.predict_clip(audio, ref_audio, ref_mouth), args.repeats, args.warmup)
        print(
            f"  {'reference, s=1, bf16 autocast':32s} {seconds * 1000:9.1f} ms/clip  {args.frames / seconds:9.0f}"
            " frames/s"
        )


def latentsync_unet(latent_size: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=13,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=384,
        attention_head_dim=8,
    ).eval()


def bench_stage2(args: argparse.Namespace) -> None:
    b = args.batch
    print(f"stage 2: ms per frame per denoising step, batch {b} (reference features computed once, outside the timing)")
    for size in args.latent_sizes:
        results: dict[str, float] = {}
        configs = {"ours (default config)": {}}
        if not args.skip_paper_scale:
            configs["ours (paper-scale preset)"] = PAPER_SCALE_RENDERER
        for name, extra in configs.items():
            torch.manual_seed(0)
            model = LipRenderUNet(latent_size=size, modconv_impl=args.modconv_impl, **extra).eval()
            sample = torch.randn(b, 4, size, size)
            motion = torch.randn(b, model.config.motion_window, model.motion_dim)
            with torch.no_grad():
                feats = model.encode_reference(torch.randn(1, 1, 4, size, size))
                seconds, _ = best_of(
                    lambda m=model, s=sample, mo=motion, f=feats: m(s, 500, mo, reference_features=f),
                    args.repeats,
                    args.warmup,
                )
            results[name] = seconds / b * 1000
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"  {size}x{size} {name:28s} {results[name]:9.1f} ms/frame/step  ({params:.1f} M params)")
            del model
        if not args.skip_latentsync:
            torch.manual_seed(0)
            unet = latentsync_unet(size)
            x = torch.randn(b, 13, size, size)
            audio_tokens = torch.randn(b, 50, 384)
            with torch.no_grad():
                seconds, _ = best_of(
                    lambda u=unet, x=x, a=audio_tokens: u(x, 500, encoder_hidden_states=a), args.repeats, args.warmup
                )
            ls = seconds / b * 1000
            params = sum(p.numel() for p in unet.parameters()) / 1e6
            print(
                f"  {size}x{size} {'LatentSync-1.5-shaped UNet':28s} {ls:9.1f} ms/frame/step  ({params:.1f} M params)"
            )
            for name, ms in results.items():
                print(f"  {size}x{size} ratio {name} / LatentSync = {ms / ls:.3f}")
            del unet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1500, help="stage-1 clip length (60 s at 25 fps)")
    parser.add_argument("--ref", type=int, default=256, help="reference frames n")
    parser.add_argument("--audio-dim", type=int, default=80, help="audio feature size D")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--latent-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--modconv-impl", default="auto", choices=["auto", "grouped", "input_scaling"])
    parser.add_argument("--skip-stage1", action="store_true")
    parser.add_argument("--skip-stage2", action="store_true")
    parser.add_argument("--skip-latentsync", action="store_true")
    parser.add_argument("--skip-paper-scale", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="also time stage 1 under CPU bf16 autocast")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, CUDA {'available' if torch.cuda.is_available() else 'not available'}"
    )
    if not args.skip_stage1:
        bench_stage1(args)
    if not args.skip_stage2:
        bench_stage2(args)


if __name__ == "__main__":
    main()
