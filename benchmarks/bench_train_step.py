"""Wall time of one training step of the demo presets (renderer and stage 1) at given torch thread counts.

    OMP_NUM_THREADS=1 python benchmarks/bench_train_step.py --data WORK/data_train --vae WORK/vae/vae.safetensors
        [--threads 1 2] [--steps 40] [--clips 12]

WORK is a demo-recipe work folder (its prepared training clips and its VAE). Each row: milliseconds per step
(forward, backward, optimizer; the renderer's EMA update too) as the recipe's lanes run them, the least of
``--repeats`` timed runs of ``--steps`` steps after a warm-up. The demo recipe's lanes use it: one thread per
lane while both train, both cores for the image lane once stage 1 is done (docs/DECISIONS.md). Run it with
nothing else on the machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import best_of  # noqa: E402

from lipsync_core.render.codec import DiffusersVAECodec  # noqa: E402
from lipsync_core.train import motion as stage1  # noqa: E402
from lipsync_core.train import renderer as stage2  # noqa: E402
from lipsync_core.train.dataset import basis_path, load_basis, load_dataset  # noqa: E402
from lipsync_core.train.vae import load_vae  # noqa: E402


def batches(sampler, batch_size: int, count: int) -> list[dict]:
    """``count`` collated batches drawn as the training loader draws them (index-seeded samples)."""
    out = []
    for i in range(count):
        samples = [sampler(np.random.default_rng((0, i * batch_size + j))) for j in range(batch_size)]
        out.append(torch.utils.data.default_collate(samples))
    return out


def train_steps(module: torch.nn.Module, optimizer: torch.optim.Optimizer, data: list[dict], grad_clip: float,
                after=None) -> None:
    """One training step per batch of ``data``: forward, backward, clip, optimizer step (+ ``after()``)."""
    for batch in data:
        out = module(batch)
        loss = out[0] if isinstance(out, tuple) else out
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if after is not None:
            after()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="prepared training clips (WORK/data_train)")
    p.add_argument("--vae", type=Path, required=True, help="the recipe's VAE (WORK/vae/vae.safetensors)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--clips", type=int, default=12, help="clips the samples are drawn from")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    mouth = load_basis(basis_path(args.data))

    r_cfg = stage2.RendererTrainConfig.preset("demo")
    vae = load_vae(args.vae, "cpu").eval().requires_grad_(False)
    clips = stage2.build_render_clips(args.data, mouth, DiffusersVAECodec(vae, 1.0, 0.0), r_cfg.model["motion_window"],
                                      r_cfg.frames, limit=args.clips)
    _, std = stage2.latent_stats(clips)
    stage2.to_model_scale(clips, 1 / std, 0.0)  # the recipe's default scale and shift
    crop = stage2.load_dataset_meta_crop(args.data)
    renderer = stage2.build_renderer(r_cfg, vae, crop, mouth.identity_dim, 1 / std, 0.0, str(args.vae),
                                     stage2.motion_stats(clips))
    r_loss = stage2.RendererLoss(renderer).train()
    r_sampler = stage2.RendererSampler(clips, r_cfg.frames, r_cfg.reference_images,
                                       motion_dropout=float(renderer.config.motion_dropout))
    from diffusers.training_utils import EMAModel

    ema = EMAModel(renderer.parameters(), decay=r_cfg.ema_decay)

    m_cfg = stage1.MotionTrainConfig.preset("demo")
    m_clips = stage1.motion_clips(load_dataset(args.data, min_frames=2)[: max(args.clips, 2)], mouth)
    motion = stage1.build_motion_model(m_cfg, m_clips[0].features.shape[1], stage1.load_dataset_spec(args.data))
    m_loss = stage1.MotionLoss(motion, mouth.components_tensor()).train()
    m_sampler = stage1.MotionSampler(m_clips, m_cfg.clip_frames, m_cfg.reference_frames, m_cfg.min_reference_frames)

    rows = [("renderer (demo preset)", r_loss, r_sampler, r_cfg, lambda: ema.step(renderer.parameters())),
            ("stage 1 (demo preset)", m_loss, m_sampler, m_cfg, None)]
    print(f"data {args.data} ({args.clips} clips), {args.steps} steps after {args.warmup}, least of {args.repeats}")
    print("| stage | threads | ms / step | vs 1 thread |\n|---|---|---|---|")
    for name, module, sampler, cfg, after in rows:
        data = batches(sampler, cfg.batch_size, args.steps)
        optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        first = None
        for threads in args.threads:
            torch.set_num_threads(threads)
            train_steps(module, optimizer, data[: args.warmup], cfg.grad_clip, after)
            seconds, _ = best_of(lambda: train_steps(module, optimizer, data, cfg.grad_clip, after),  # noqa: B023
                                 repeats=args.repeats)
            ms = seconds / args.steps * 1000
            first = first or ms
            print(f"| {name} | {threads} | {ms:.0f} | {first / ms:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
