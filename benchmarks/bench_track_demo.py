"""What the whole job pays for face tracking: the three demo clips tracked from a cold start, in CPU seconds.

    OMP_NUM_THREADS=1 python benchmarks/bench_track_demo.py [--backend torch|mediapipe] [--rounds 1]

Run it once per backend, each in a fresh process: network loading and (for long inputs) the face mesh's
TorchScript trace are part of the cost, as they are in a job. CPU time of the whole process (mediapipe
runs its own threads) holds on a shared machine where wall-clock time does not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lipsync_core.face.tracking import FaceTracker  # noqa: E402
from lipsync_core.synthetic.io import read_video  # noqa: E402
from lipsync_core.types import DEMO_CLIPS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="torch", choices=["torch", "mediapipe"])
    parser.add_argument("--rounds", type=int, default=1, help="track the clips this many times (longer input)")
    args = parser.parse_args()
    clips = [read_video(DEMO_CLIPS / f"{name}.mp4")[0] for name in ("video", "reference", "target")]
    start = time.process_time()
    frames = 0
    for clip in clips * args.rounds:
        with FaceTracker(25.0, crop_size=256, backend=args.backend) as tracker:
            tracker.feed(clip)
            tracker.finish()
        frames += len(clip)
    seconds = time.process_time() - start
    print(f"{args.backend}: {frames} frames tracked in {seconds:.2f} CPU s ({frames / seconds:.1f} frames per CPU s)")


if __name__ == "__main__":
    main()
