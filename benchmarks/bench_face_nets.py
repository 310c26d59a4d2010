"""The face networks alone: CPU milliseconds a frame by batch size, eager and traced, and the per-call floor.

    OMP_NUM_THREADS=1 python benchmarks/bench_face_nets.py [--repeat 5]

Times are this thread's CPU time (``time.thread_time``), the best of ``--repeat`` passes over 32 frames (the
rows take turns, one pass each per round), so they hold on a machine that other jobs share (wall-clock figures
there are not comparable). The mesh runs with its twin eye branches fused (``torch_nets.fuse_twin_branches``)
and, for comparison, without. Tracking meshes
one frame a call (each region comes from the previous frame's landmarks): the batch-1 row is what video
mode pays; the batched rows are static mode's. The last rows time one depthwise 3x3 convolution at batch 1,
the kind of op the mesh runs about 70 times a call: its cost barely falls with its size, which is the
per-call floor of torch's CPU kernels that the batch-1 mesh pays op after op.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import best_of  # noqa: E402

from lipsync_core.face.torch_nets import DATA_DIR, GraphNet  # noqa: E402

# (network, input size, its twin branches fused: see torch_nets.fuse_twin_branches; the unfused row is the A/B)
NETS = [("face_detector_short", 128, True), ("face_mesh_attention", 192, True), ("face_mesh_attention", 192, False)]
FRAMES = 32


def best_cpu_ms(fn: Callable[[], object], repeat: int) -> float:
    """This thread's CPU milliseconds, the least of ``repeat`` calls after one warm-up call."""
    return best_of(fn, repeat, warmup=1, clock=time.thread_time)[0] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; CPU ms a frame (best of {args.repeat})")
    print(f"{'network':36s} {'batch':>5s} {'eager':>8s} {'traced':>8s}")
    # every (network, batch, eager or traced) run once per round, rounds in turn: this machine's speed drifts
    # within minutes, and timing one row's repeats before the next's put that drift between the rows
    rows: dict[tuple[str, int], dict[str, Callable[[], None]]] = {}
    for name, size, fuse in NETS:
        net = GraphNet(DATA_DIR / f"{name}.safetensors", fuse_twins=fuse).eval()
        label = name if fuse else f"{name} (eyes unfused)"
        frames = torch.rand(FRAMES, 3, size, size)
        for batch in (1, 4, 16, 32):
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(net, frames[:batch], check_trace=False)

            def run(model, batch=batch, frames=frames):
                with torch.no_grad():
                    for start in range(0, FRAMES, batch):
                        model(frames[start : start + batch])

            rows[label, batch] = {"eager": lambda run=run, net=net: run(net),
                                  "traced": lambda run=run, traced=traced: run(traced)}  # fmt: skip
    for runs in rows.values():  # one warm-up call each (a trace's first call is slow), then rounds of one
        for fn in runs.values():
            fn()
    best = {key: {kind: float("inf") for kind in runs} for key, runs in rows.items()}
    for _ in range(args.repeat):
        for key, runs in rows.items():
            for kind, fn in runs.items():
                best[key][kind] = min(best[key][kind], best_of(fn, clock=time.thread_time)[0] * 1000 / FRAMES)
    for (label, batch), ms in best.items():
        print(f"{label:36s} {batch:5d} {ms['eager']:8.2f} {ms['traced']:8.2f}")
    print(f"{'depthwise 3x3, batch 1':36s} {'C x H':>9s} {'us a call':>10s}")
    for channels, side in ((16, 96), (32, 48), (64, 24), (128, 12)):
        weight = torch.rand(channels, 1, 3, 3)
        x = torch.rand(1, channels, side, side).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            us = best_cpu_ms(lambda x=x, w=weight, c=channels: [F.conv2d(x, w, None, 1, 1, 1, c) for _ in range(100)],
                             args.repeat) * 10
        print(f"{'':36s} {f'{channels}x{side}':>9s} {us:10.1f}")


if __name__ == "__main__":
    main()
