"""Issue 15's changes one at a time: train each variant on the demo recipe's data, then bench_fidelity it.

    python -m lipsync_core.train.demo_recipe --work /tmp/demo_recipe          # data + the full recipe
    OMP_NUM_THREADS=1 python benchmarks/fidelity_ablation.py --work /tmp/demo_recipe --out /tmp/ablate

Every variant is the recipe's models folder with one file replaced by a model trained with one setting
changed (same data, same seeds), so each row differs from its neighbour by exactly one thing:

- VAE (the recipe's steps): mid-block attention and plain L1 (the first demo VAE) -> no attention -> + the
  image-gradient loss (the recipe's). Measured on the VAE-only and seam rows.
- renderer (``--renderer-steps``, shorter than the recipe's 10k to fit a CPU): the first recipe (one noise
  and timestep per 5-frame sample, raw motion, no copy path) -> + motion normalisation -> + the aligned
  reference copy path -> + per-frame noise and timesteps -> + the mouth map -> + motion dropout, so that
  inference can guide towards the motion (the recipe's settings).
  Renderer and whole-job rows.
- stage 1 (the recipe's steps): fixed reference length n = 128 vs random lengths 16..128 (the recipe's).

Two variants train at a time (``--jobs 2``, one thread each). Prints one fidelity table per variant and
writes ``OUT/ablation.json`` and ``OUT/ablation.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_core.models.bundle import LipSyncModels  # noqa: E402
from lipsync_core.train.fidelity import FidelityOptions, fidelity, markdown  # noqa: E402
from lipsync_core.types import MODEL_FILES  # noqa: E402

FIRST_RENDERER = {"normalise_motion": False, "shared_noise": True,
                  "model": {"reference_concat": False, "mouth_map_channels": 0, "motion_dropout": 0.0}}
NO_MAP = {"model": {"mouth_map_channels": 0, "motion_dropout": 0.0}}
VARIANTS = {
    "vae: attention, L1 (first)": ("vae", {"grad_weight": 0.0, "model": {"mid_block_add_attention": True}}),
    "vae: no attention, L1": ("vae", {"grad_weight": 0.0}),
    "vae: no attention, L1 + gradients (recipe)": ("vae", {}),
    "renderer: first recipe": ("renderer", FIRST_RENDERER),
    "renderer: + motion normalisation": ("renderer", {**FIRST_RENDERER, "normalise_motion": True}),
    "renderer: + copy path": ("renderer", {**NO_MAP, "shared_noise": True}),
    "renderer: + per-frame noise": ("renderer", NO_MAP),
    "renderer: + mouth map": ("renderer", {"model": {"motion_dropout": 0.0}}),
    "renderer: + motion dropout for guidance (recipe)": ("renderer", {}),
    "stage 1: fixed n = 128": ("motion", {"min_reference_frames": None}),
    "stage 1: random n 16..128 (recipe)": ("motion", {}),
}
ROWS_OF = {"vae": ("resample", "vae", "seam"), "renderer": ("renderer", "whole job"), "motion": ("whole job",)}


def _config(stage: str, changes: dict, steps: int | None):
    from lipsync_core.train.motion import MotionTrainConfig
    from lipsync_core.train.renderer import RendererTrainConfig
    from lipsync_core.train.vae import VAETrainConfig

    cls = {"vae": VAETrainConfig, "renderer": RendererTrainConfig, "motion": MotionTrainConfig}[stage]
    config = cls.preset("demo")
    model = {**config.model, **changes.get("model", {})}
    config = replace(config, model=model, **{k: v for k, v in changes.items() if k != "model"})
    if steps:
        config = replace(config, steps=steps, checkpoint_every=max(min(config.checkpoint_every, steps // 3), 1))
    return config


def train_variant(name: str, work: Path, out: Path, steps: dict) -> str:
    """Train one variant into OUT/<slug>/ (a full models folder); returns the folder."""
    import torch

    from lipsync_core.train.motion import train_motion
    from lipsync_core.train.renderer import train_renderer
    from lipsync_core.train.vae import train_vae

    torch.set_num_threads(1)
    stage, changes = VARIANTS[name]
    folder = out / _slug(name)
    if (folder / MODEL_FILES[stage]).is_file():
        return str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for kind, file in MODEL_FILES.items():
        if kind != stage:
            shutil.copyfile(work / "models" / file, folder / file)
    if not changes and not steps.get(stage):  # the recipe's own setting and steps: its model as it is
        shutil.copyfile(work / "models" / MODEL_FILES[stage], folder / MODEL_FILES[stage])
        return str(folder)
    config = _config(stage, changes, steps.get(stage))
    data = work / "data_train"
    if stage == "vae":
        train_vae(data, folder / "vae_train", config, progress=False)
        shutil.copyfile(folder / "vae_train" / "vae.safetensors", folder / "vae.safetensors")
    elif stage == "renderer":
        train_renderer(data, folder / "renderer_train", config, work / "models" / "vae.safetensors", progress=False)
        shutil.copyfile(folder / "renderer_train" / "renderer.safetensors", folder / "renderer.safetensors")
    else:
        train_motion(data, folder / "motion_train", config, progress=False)
        shutil.copyfile(folder / "motion_train" / "motion.safetensors", folder / "motion.safetensors")
    return str(folder)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="the demo recipe's work folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--videos", type=Path, help="held-out clips (default WORK/videos_test)")
    p.add_argument("--renderer-steps", type=int, default=3000)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--max-frames", type=int, default=48, help="frames per held-out clip in the benchmark")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    steps = {"renderer": args.renderer_steps}
    with get_context("spawn").Pool(max(args.jobs, 1)) as pool:
        folders = pool.starmap(train_variant, [(n, args.work, args.out, steps) for n in args.variants])
    videos = args.videos or args.work / "videos_test"
    results, text = {}, []
    for name, folder in zip(args.variants, folders, strict=True):
        stage = VARIANTS[name][0]
        report = fidelity(LipSyncModels.from_folder(folder), videos,
                          FidelityOptions(max_frames=args.max_frames, rows=ROWS_OF[stage]))
        results[name] = report["rows"]
        text.append(f"### {name}\n\n{markdown(report)}")
        print(text[-1], flush=True)
    (args.out / "ablation.json").write_text(json.dumps(results, indent=1))
    (args.out / "ablation.md").write_text("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
