"""Pictures a person can judge: input | output | truth strips of the demo and of a still photo.

    OMP_NUM_THREADS=1 python benchmarks/side_by_side.py [--models DIR] [--out docs/images]

- ``side_by_side_demo.jpg``: the demo clip (a held-out puppet speaker) re-dubbed with its own audio, so
  the input is the truth: rows are frames chosen over the mouth's opening, columns input | output | the
  lower face of both enlarged x2.
- ``side_by_side_still.jpg``: skimage's astronaut photo repeated into a 3 s clip and driven by the demo's
  target sentence (a still has no truth): columns input | output | enlarged lower face of both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_core.audio import load_audio_file  # noqa: E402
from lipsync_core.cli import DEMO_MODELS  # noqa: E402
from lipsync_core.face.template import interocular  # noqa: E402
from lipsync_core.media import ArrayFrames, read_video  # noqa: E402
from lipsync_core.pipeline import JobOptions, LipSyncModels, lipsync  # noqa: E402

DEMO = ROOT / "lipsync_core" / "assets" / "demo"


def run(models: LipSyncModels, frames: np.ndarray, fps: float, wave: np.ndarray, style_wave: np.ndarray):
    chunks: list[np.ndarray] = []
    result = lipsync(ArrayFrames(frames, fps), wave, models, lambda f, m: chunks.append(f), style_wave=style_wave,
                     options=JobOptions())
    return np.concatenate(chunks), result


def lower_face(frame: np.ndarray, landmarks: np.ndarray, height: int) -> np.ndarray:
    """The mouth and chin of one frame, a box of 1.6 x 1.2 IOD around the mouth, resized to ``height``."""
    iod = float(interocular(landmarks[None, :, :3])[0])
    cx, cy = landmarks[[13, 14, 61, 291], :2].mean(axis=0)
    x0, x1 = int(cx - 0.8 * iod), int(cx + 0.8 * iod)
    y0, y1 = int(cy - 0.5 * iod), int(cy + 0.7 * iod)
    box = frame[max(y0, 0):y1, max(x0, 0):x1]
    return cv2.resize(box, (int(round(height * box.shape[1] / box.shape[0])), height), interpolation=cv2.INTER_CUBIC)


def strip(rows: list[list[np.ndarray]]) -> np.ndarray:
    """A grid of images, each row resized to its first image's height, rows padded to one width."""
    made = []
    for row in rows:
        h = row[0].shape[0]
        cells = [cv2.resize(c, (int(round(c.shape[1] * h / c.shape[0])), h)) if c.shape[0] != h else c for c in row]
        made.append(np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0)), constant_values=255) for c in cells], axis=1))
    width = max(r.shape[1] for r in made)
    return np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in made])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=DEMO_MODELS)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    p.add_argument("--rows", type=int, default=4)
    args = p.parse_args(argv)
    models = LipSyncModels.from_folder(args.models)
    args.out.mkdir(parents=True, exist_ok=True)

    frames, fps = read_video(DEMO / "video.mp4")
    wave = load_audio_file(DEMO / "video.wav")
    out, _ = run(models, frames, fps, wave, wave)
    truth = np.load(DEMO / "video.truth.npz")["landmarks"]
    gap = truth[:, 14, 1] - truth[:, 13, 1]
    picks = np.argsort(gap)[np.linspace(0, len(gap) - 1, args.rows).round().astype(int)]
    rows = [[frames[i], out[i], lower_face(frames[i], truth[i], 256), lower_face(out[i], truth[i], 256)]
            for i in np.sort(picks)]
    cv2.imwrite(str(args.out / "side_by_side_demo.jpg"), strip(rows)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])

    import skimage.data

    photo = skimage.data.astronaut()[:320, 96:416]  # the head and shoulders, 320 x 320
    target = load_audio_file(DEMO / "target.wav")
    still = np.repeat(photo[None], int(round(3.0 * 25)), axis=0)
    out, result = run(models, still, 25.0, target, target)
    landmarks = result.track.landmarks[result.frame_indices]
    opening = models.mouth.opening(result.motion.params, models.mouth.mean_face)  # ranks frames by opening
    picks = np.argsort(opening)[np.linspace(0, len(opening) - 1, args.rows).round().astype(int)]
    rows = [[photo, out[i], lower_face(photo, landmarks[i], 256), lower_face(out[i], landmarks[i], 256)]
            for i in np.sort(picks)]
    cv2.imwrite(str(args.out / "side_by_side_still.jpg"), strip(rows)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"wrote {args.out / 'side_by_side_demo.jpg'} and {args.out / 'side_by_side_still.jpg'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
