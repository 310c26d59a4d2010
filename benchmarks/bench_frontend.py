"""Front-end speed on this machine: face tracking (video mode), crops, paste-back, audio features.

    python benchmarks/bench_frontend.py [--frames 100]

Frames are the astronaut photo drifting and turning slowly (a real face, tracking mode).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lipsync_core.audio import compute_features
from lipsync_core.face import paste_back, track_faces, warp_to_crops


def make_video(height: int, width: int, frames: int) -> np.ndarray:
    face = skimage.data.astronaut()
    side = min(height, width)
    face = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA if side < 512 else cv2.INTER_CUBIC)
    out = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):
        m = cv2.getRotationMatrix2D((side / 2, side / 2), 4 * np.sin(i / 15), 1.0)
        m[0, 2] += (width - side) / 2 + 6 * np.sin(i / 10)
        m[1, 2] += (height - side) / 2 + 3 * np.cos(i / 12)
        out[i] = cv2.warpAffine(face, m, (width, height), borderMode=cv2.BORDER_REFLECT)
    return out


def timed(fn, repeat: int = 1):
    best = float("inf")
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    n = args.frames
    print(f"{'what':44s} {'size':>10s} {'frames/s':>10s}")
    for h, w in ((512, 512), (1080, 1920)):
        video = make_video(h, w, n)
        secs, track = timed(lambda video=video: track_faces(video, fps=25, crop_size=256))
        assert track.detected.mean() > 0.95, track.notes
        print(f"{'track_faces (mediapipe, video mode)':44s} {f'{w}x{h}':>10s} {n / secs:10.1f}")
        for size in (256, 512):
            secs, crops = timed(lambda video=video, track=track, size=size: warp_to_crops(video, track, size))
            print(f"{f'warp_to_crops S={size}':44s} {f'{w}x{h}':>10s} {n / secs:10.1f}")
            secs, _ = timed(lambda video=video, crops=crops, track=track: paste_back(video, crops, track))
            print(f"{f'paste_back S={size}':44s} {f'{w}x{h}':>10s} {n / secs:10.1f}")
    wave = np.random.default_rng(0).standard_normal(16000 * 60).astype(np.float32) * 0.1
    compute_features(wave[:16000], 25)  # warm-up (librosa's first call compiles)
    secs, feats = timed(lambda: compute_features(wave, 25), repeat=3)
    print(f"{'compute_features logmel (60 s of audio)':44s} {'25 fps':>10s} {len(feats) / secs:10.1f}")


if __name__ == "__main__":
    main()
