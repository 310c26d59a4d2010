"""Picture fidelity of the lower face at frame level (issue 15): self-reenactment on held-out puppets.

Rows: resample only, VAE only, seam ceiling, renderer driven by the true motion, whole job. Figures:
mouth- and repainted-region PSNR, mouth and nose sharpness (output / truth), repainted area, re-tracked
lip LMD next to the tracker's floor, mouth-opening correlation and range ratio (lipsync_core/train/fidelity.py
says exactly how each is taken).

    python -m lipsync_core.synthetic --out /tmp/fid/videos_test256 --speakers 4 --clips 3 --seed 1 --size 256
    OMP_NUM_THREADS=1 python benchmarks/bench_fidelity.py --videos /tmp/fid/videos_test256 [--models DIR]

Seed 1 puppets are speakers, faces and sentences the demo models never saw (the recipe trains on seed 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_core.cli import DEMO_MODELS  # noqa: E402
from lipsync_core.pipeline import LipSyncModels  # noqa: E402
from lipsync_core.train.fidelity import ROWS, FidelityOptions, fidelity, markdown  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=Path, required=True, help="held-out puppet clips (DIR/<speaker>/<clip>.mp4)")
    p.add_argument("--models", type=Path, default=DEMO_MODELS)
    p.add_argument("--clips-per-speaker", type=int, default=1)
    p.add_argument("--max-frames", type=int, default=0, help="frames per clip (0: all)")
    p.add_argument("--steps", type=int, default=FidelityOptions.steps)
    p.add_argument("--sampler", default=FidelityOptions.sampler)
    p.add_argument("--guidance", type=float, default=FidelityOptions.guidance)
    p.add_argument("--guided-steps", type=float, default=FidelityOptions.guided_steps)
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    p.add_argument("--json", type=Path, help="write the whole report here")
    args = p.parse_args(argv)
    start = time.perf_counter()
    models = LipSyncModels.from_folder(args.models)
    options = FidelityOptions(args.clips_per_speaker, args.max_frames, args.steps, args.sampler,
                              guidance=args.guidance, guided_steps=args.guided_steps, rows=tuple(args.rows))
    report = fidelity(models, args.videos, options, progress=True)
    print(markdown(report))
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
