"""Peak memory of ``python -m lipsync_core run`` on a 10 s and a 60 s clip: bounded by the chunk?

Each run is a fresh process; its peak resident memory (ru_maxrss) is printed with the
ratio. The claim (issue 6): the 60 s clip needs less than 1.5x the memory of the 10 s one.

    python benchmarks/bench_pipeline_memory.py [--models DIR] [--steps 2] [--size 256]

Without --models the demo weights are used (lipsync_core/assets/demo_models).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_core.cli import DEMO_MODELS  # noqa: E402
from lipsync_core.media import VideoWriter  # noqa: E402

FPS = 25.0


def write_clip(path: Path, seconds: float, size: int) -> None:
    """A drifting, slowly zooming real face (the astronaut photo), streamed to disk."""
    base = cv2.resize(skimage.data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    n = int(seconds * FPS)
    with VideoWriter(path, FPS) as writer:
        for start in range(0, n, 50):
            frames = []
            for i in range(start, min(start + 50, n)):
                phase = 2 * np.pi * i / (4 * FPS)
                m = cv2.getRotationMatrix2D((size / 2, size / 2), 2 * np.sin(phase), 1 + 0.02 * np.cos(phase))
                m[:, 2] += (3 * np.sin(phase / 2), 2 * np.cos(phase / 3))
                frames.append(cv2.warpAffine(base, m, (size, size), borderMode=cv2.BORDER_REFLECT))
            writer.write(np.stack(frames))


def write_audio(path: Path, seconds: float, rate: int = 16000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3.0 * t))
    sf.write(path, (0.2 * envelope * np.sin(2 * np.pi * 180 * t)).astype(np.float32), rate)


def child(args) -> None:
    from lipsync_core.pipeline import JobOptions, LipSyncModels, RenderSettings, lipsync_file

    models = LipSyncModels.from_folder(args.models)
    start = time.perf_counter()
    result = lipsync_file(args.video, args.audio, args.out, models,
                          options=JobOptions(settings=RenderSettings(steps=args.steps, chunk_size=args.chunk)))
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RESULT frames={result.num_frames} seconds={seconds:.1f} peak_mb={peak_mb:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=DEMO_MODELS)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--durations", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--audio", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seconds in args.durations:
            video, audio, out = tmp / f"v{seconds:g}.mp4", tmp / f"a{seconds:g}.wav", tmp / f"o{seconds:g}.mp4"
            write_clip(video, seconds, args.size)
            write_audio(audio, seconds)
            cmd = [sys.executable, __file__, "--child", "--models", str(args.models), "--steps", str(args.steps),
                   "--chunk", str(args.chunk), "--video", str(video), "--audio", str(audio), "--out", str(out)]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT")), None)
            if line is None:
                sys.exit(f"run of {seconds:g} s failed:\n{done.stderr[-3000:]}")
            fields = dict(kv.split("=") for kv in line.split()[1:])
            rows.append((seconds, int(fields["frames"]), float(fields["seconds"]), float(fields["peak_mb"])))
    print(f"{'clip':>8} {'frames':>7} {'wall s':>8} {'frames/s':>9} {'peak MB':>8}")
    for seconds, frames, wall, peak in rows:
        print(f"{seconds:>7g}s {frames:>7d} {wall:>8.1f} {frames / wall:>9.2f} {peak:>8.0f}")
    if len(rows) >= 2:
        print(f"peak memory ratio {rows[-1][0]:g}s / {rows[0][0]:g}s: {rows[-1][3] / rows[0][3]:.2f}x (target < 1.5x)")


if __name__ == "__main__":
    main()
