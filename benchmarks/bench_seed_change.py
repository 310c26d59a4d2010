"""A seed-only change in the core: what a second run costs against the whole job, with the render's cache of
its seed-independent work (lipsync_core.render.cache), the renderer run eagerly or as its CPU graph
(lipsync_core.render.traced).

The all-in-one ComfyUI node does exactly this: ``pipeline.prepare`` once (kept across runs), then
``stages.render`` per run with the job's RenderCache. Times are CPU seconds of this process (not inflated by
other processes on a shared machine); run with ``OMP_NUM_THREADS=1``. Each re-render is checked bit for bit
against a render without the cache.

    OMP_NUM_THREADS=1 python benchmarks/bench_seed_change.py [--models DIR] [--steps 10] [--repeats 3]

Without --models: the demo weights and clips (46 output frames, the video's own audio as style reference).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_core import pipeline, stages  # noqa: E402
from lipsync_core.audio import load_audio_file  # noqa: E402
from lipsync_core.media import ArrayFrames, read_video  # noqa: E402
from lipsync_core.models.bundle import LipSyncModels  # noqa: E402
from lipsync_core.render.cache import RenderCache  # noqa: E402
from lipsync_core.render.frames import Stopwatch  # noqa: E402
from lipsync_core.render.settings import RenderSettings  # noqa: E402
from lipsync_core.types import DEMO_CLIPS, DEMO_MODELS  # noqa: E402


def cpu_stopwatch() -> Stopwatch:
    """The pipeline's stopwatch, counting this process's CPU seconds instead of wall seconds."""
    import lipsync_core.render.frames as frames

    class CpuTime:
        perf_counter = staticmethod(time.process_time)

    frames.time = CpuTime  # the module's only use of time is the stopwatch's clock
    return Stopwatch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=DEMO_MODELS)
    parser.add_argument("--steps", type=int, default=RenderSettings.steps)
    parser.add_argument("--repeats", type=int, default=3, help="timed seeds per kind (the least is reported)")
    args = parser.parse_args()

    frames, fps = read_video(DEMO_CLIPS / "video.mp4")
    wave, own = load_audio_file(DEMO_CLIPS / "target.wav"), load_audio_file(DEMO_CLIPS / "video.mp4")
    models = LipSyncModels.from_folder(args.models, "cpu")
    source = ArrayFrames(frames, fps)

    def render(seed: int, cache: RenderCache | None, clock: Stopwatch, graph: bool) -> np.ndarray:
        settings = RenderSettings(seed=seed, steps=args.steps)
        return stages.concat(stages.render(models, job.analysis, job.motion, source, job.matched.frame_indices,
                                           settings, cache=cache, stopwatch=clock, graph=graph))[0]

    with torch.inference_mode():
        pipeline.prepare(source, wave, models, None, own)  # warm-up: lazy loads and traced graphs
        rows: dict[str, list[float]] = {}
        splits: dict[str, dict[str, float]] = {}
        for repeat in range(args.repeats):
            start = time.process_time()
            job = pipeline.prepare(source, wave, models, None, own)
            rows.setdefault("prepare", []).append(time.process_time() - start)
            # eager first: the renderer is traced by the first render that asks for its graph, and keeps it
            for graph, kind in ((False, "eager"), (True, "graph")):
                cache = RenderCache()
                for name, seed in ((f"render, {kind}", 1), (f"seed change, {kind}", 2 + repeat)):
                    clock = cpu_stopwatch()
                    start = time.process_time()
                    out = render(seed, cache, clock, graph)
                    seconds = time.process_time() - start
                    if seconds < min(rows.get(name, [float("inf")])):  # the split of the run whose total is shown
                        splits[name] = clock.seconds
                    rows.setdefault(name, []).append(seconds)
                    if name.startswith("seed change"):
                        again = render(seed, None, Stopwatch(), graph)
                        assert np.array_equal(out, again), "the cache changed a frame"
    best = {name: min(values) for name, values in rows.items()}
    print(f"{len(job.matched.frame_indices)} frames, {args.steps} steps, torch threads {torch.get_num_threads()}, "
          f"CPU seconds, least of {args.repeats}; the renderer's U-Net eager or as its frozen CPU graph "
          f"(render.traced; the first graph render, {rows['render, graph'][0]:.2f} s, includes the trace)")
    print(f"  prepare                      {best['prepare']:6.2f}")
    for kind in ("eager", "graph"):
        whole = best["prepare"] + best[f"render, {kind}"]
        change = best[f"seed change, {kind}"]
        print(f"{kind}: whole job {whole:6.2f} = prepare + render {best[f'render, {kind}']:.2f} ("
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(splits[f"render, {kind}"].items(), key=lambda kv: -kv[1]))
              + f"); seed change {change:.2f} ("
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(splits[f"seed change, {kind}"].items(),
                                                              key=lambda kv: -kv[1]))
              + f"): {change / whole:.2f}x")
    print(f"re-renders bit-identical to uncached ones: yes; cache held {cache.bytes / 2**20:.2f} MiB "
          f"({cache.stats()['blocks']} blocks)")


if __name__ == "__main__":
    main()
