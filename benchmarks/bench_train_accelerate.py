"""One process vs. ``accelerate launch --num_processes 2`` (CPU) on the same short stage-1 run.

    python benchmarks/bench_train_accelerate.py --data PREPARED_DIR [--steps 200]

Same global batch (8 = 8 x 1 process = 4 x 2 processes), same index-seeded samples, same schedule:
prints both loss curves, their correlation, and the wall time of each run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TINY = ["--set", "d_model=32", "--set", "num_heads=4", "--set", "ff_dim=64", "--set", "decoder_layers=1",
        "--set", "audio_encoder_layers=1", "--set", "lip_encoder_layers=1", "--set", "clip_frames=24",
        "--set", "reference_frames=32"]


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def losses(out: Path) -> np.ndarray:
    rows = [json.loads(line) for line in (out / "motion_run" / "train_log.jsonl").read_text().splitlines()]
    return np.array([r["loss"] for r in rows])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    common = ["train-motion", "--data", args.data, "--steps", str(args.steps), "--lr", "2e-3", "--log-every", "20",
              "--cpu", "--quiet", *TINY]
    with tempfile.TemporaryDirectory() as tmp:
        one, two = Path(tmp) / "one", Path(tmp) / "two"
        t1 = run([sys.executable, "-m", "lipsync_core.train", *common, "--out", str(one), "--batch-size", "8"])
        t2 = run(["accelerate", "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "lipsync_core.train", *common,
                  "--out", str(two), "--batch-size", "4"])
        a, b = losses(one), losses(two)
    print("step  1 process  2 processes")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        print(f"{20 * (i + 1):4d}  {x:9.3f}  {y:11.3f}")
    corr = float(np.corrcoef(np.log(a), np.log(b))[0, 1])
    print(f"correlation of log-loss curves {corr:.3f}; final {a[-1]:.3f} vs {b[-1]:.3f}; "
          f"wall {t1:.1f} s vs {t2:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
