"""Puppet-world generation speed: ``python benchmarks/bench_synthetic.py [--size 256] [--clips 6]``.

Reports frames/s of ``generate_clip`` (speech + articulation + rendering) and of the full dataset
writer (adds H.264/AAC encoding, WAV, JSON, truth files), after one warm-up clip.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from lipsync_core.synthetic.clip import generate_clip, make_speakers
from lipsync_core.synthetic.io import write_clip
from lipsync_core.synthetic.sentences import make_sentences


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--clips", type=int, default=6)
    args = p.parse_args()
    speakers = make_speakers(2, 0)
    texts = make_sentences(args.clips, 1)
    for s in speakers:
        generate_clip(s, "Warm up.", size=args.size)
    frames, t_gen, t_write = 0, 0.0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(texts):
            t0 = time.perf_counter()
            clip = generate_clip(speakers[i % 2], text, seed=i, size=args.size)
            t1 = time.perf_counter()
            write_clip(clip, tmp, f"c{i}")
            t2 = time.perf_counter()
            frames += clip.n_frames
            t_gen += t1 - t0
            t_write += t2 - t1
    print(json.dumps({
        "size": args.size, "frames": frames,
        "generate_fps": round(frames / t_gen, 1),
        "generate_and_write_fps": round(frames / (t_gen + t_write), 1),
        "minutes_for_20_min_of_25fps_video": round(20 * 60 * 25 / (frames / (t_gen + t_write)) / 60, 1),
    }))


if __name__ == "__main__":
    main()
