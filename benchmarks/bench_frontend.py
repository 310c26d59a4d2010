"""Front-end speed on this machine: face tracking (video mode), crops, paste-back, audio features.

    python benchmarks/bench_frontend.py [--frames 100] [--device cuda] [--dtype float16] [--batch 64] [--repeat 3]

Frames are the astronaut photo drifting and turning slowly (a real face, tracking mode). Face landmarks:
the torch face mesh (default backend; video mode: detector batched, mesh frame after frame, as a clip
shorter than MESH_TRACE_AFTER_FRAMES runs it and, "traced", as a longer one goes on after its TorchScript
trace; static mode: both batched, also untraced and traced) against the mediapipe package (one frame at a
time, its own threads) when installed.
On a CPU, set OMP_NUM_THREADS (the torch figures use torch's threads; mediapipe's XNNPACK picks its own).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import best_of

from lipsync_core.audio import compute_features
from lipsync_core.face import paste_back, track_faces, warp_to_crops
from lipsync_core.face.backends import MediaPipeBackend, TorchMeshBackend, has_legacy_face_mesh
from lipsync_core.face.torch_mesh import MESH_TRACE_AFTER_FRAMES


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


def use_trace(net, trace) -> None:
    """Run the shared CPU mesh network with ``trace`` from now on; None: untraced, as a fresh process has it
    (traced after MESH_TRACE_AFTER_FRAMES frames)."""
    net._traced = trace
    net.trace_after_frames, net._frames_seen = (None if trace is not None else MESH_TRACE_AFTER_FRAMES), 0


def landmark_rows(
    video: np.ndarray, device: str, dtype: torch.dtype, batch: int, repeat: int = 3
) -> list[tuple[str, float]]:
    """frames/s of the face-landmark backends alone on this video (after a warm-up; best of ``repeat``).

    The backends take turns, one timed pass each per round: this machine's speed drifts by up to 1.6x
    within minutes, and timing one backend's repeats before the next's put that drift into the ratios.
    """
    n = len(video)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    runners: list[tuple[str, Callable[[], None]]] = []
    cpu_fp32 = device == "cpu" and dtype == torch.float32
    trace = None  # the mesh's TorchScript trace, what a long video reaches after MESH_TRACE_AFTER_FRAMES frames
    for static, traced in ((False, False), (False, True), (True, False), (True, True)):
        if traced and not cpu_fp32:
            continue  # the trace is a CPU fp32 thing
        mesh = TorchMeshBackend(25.0, static=static, device=device, dtype=dtype)
        mesh.process_batch(video[:2])
        net = mesh._mesh._mesh  # on the CPU one network object shared by every backend: set per run
        if traced and trace is None:
            net._trace()
            trace = net._traced

        def run(mesh=mesh, net=net, traced=traced, trace=trace):
            mesh.close()  # forget the tracked face: every run starts by detecting it
            if cpu_fp32:
                use_trace(net, trace if traced else None)
            for start in range(0, n, batch):
                mesh.process_batch(video[start : start + batch])
            sync()

        mode = ("static" if static else "video") + (", traced" if traced else "")
        runners.append((f"torch mesh {mode} ({device} {str(dtype)[6:]}, batch {batch})", run))
    packages = []
    if has_legacy_face_mesh():
        for static in (False, True):
            mp = MediaPipeBackend(25.0, static=static)
            mp.process(video[0])
            packages.append(mp)
            runners.append((f"mediapipe {'static' if static else 'video'} (its own threads)",
                            lambda mp=mp: [mp.process(f) for f in video]))  # fmt: skip
    best = {name: float("inf") for name, _ in runners}
    for _ in range(repeat):
        for name, run in runners:
            best[name] = min(best[name], best_of(run)[0])
    for mp in packages:
        mp.close()
    if trace is not None:  # the shared CPU network as a fresh process has it, for the rows timed after these
        use_trace(net, None)
    return [(name, n / secs) for name, secs in best.items()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch", type=int, default=64, help="frames per feed (as track_faces' batch_size)")
    parser.add_argument("--landmarks-only", action="store_true", help="skip crops, paste-back and audio")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the landmark rows (best of them)")
    args = parser.parse_args()
    n = args.frames
    dtype = getattr(torch, args.dtype)
    print(f"torch threads {torch.get_num_threads()}, device {args.device}")
    print(f"{'what':56s} {'size':>10s} {'frames/s':>10s}")
    for h, w in ((512, 512), (1080, 1920)):
        video = make_video(h, w, n)
        for what, fps in landmark_rows(video, args.device, dtype, args.batch, args.repeat):
            print(f"{what:56s} {f'{w}x{h}':>10s} {fps:10.1f}")
        if args.landmarks_only:
            continue
        secs, track = best_of(lambda video=video: track_faces(video, fps=25, crop_size=256, device=args.device))
        assert track.detected.mean() > 0.95, track.notes
        print(f"{'track_faces (torch, video mode)':56s} {f'{w}x{h}':>10s} {n / secs:10.1f}")
        for size in (256, 512):
            secs, crops = best_of(lambda video=video, track=track, size=size: warp_to_crops(video, track, size))
            print(f"{f'warp_to_crops S={size}':56s} {f'{w}x{h}':>10s} {n / secs:10.1f}")
            secs, _ = best_of(lambda video=video, crops=crops, track=track: paste_back(video, crops, track))
            print(f"{f'paste_back S={size}':56s} {f'{w}x{h}':>10s} {n / secs:10.1f}")
    if args.landmarks_only:
        return
    wave = np.random.default_rng(0).standard_normal(16000 * 60).astype(np.float32) * 0.1
    compute_features(wave[:16000], 25)  # warm-up
    secs, feats = best_of(lambda: compute_features(wave, 25), repeats=3)
    print(f"{'compute_features logmel (60 s of audio)':56s} {'25 fps':>10s} {len(feats) / secs:10.1f}")


if __name__ == "__main__":
    main()
