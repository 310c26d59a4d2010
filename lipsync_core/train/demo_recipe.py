"""The demo weights, in one command: puppet data -> prepare -> basis -> VAE -> stage 1 -> stage 2 -> stage 2
fine-tuned against the closed-mouth shortcut -> the VAE's decoder fine-tuned on the lips -> eval.

    python -m lipsync_core.train.demo_recipe --work /tmp/demo_recipe --export

trains the demo models on puppet speakers (seed 0), evaluates them on held-out puppet speakers (seed 1:
unseen faces, voices, styles and sentences), with ``--compare-none`` also trains and evaluates the ``none`` (no
reference) variant of stage 1 with the same recipe for comparison, and with ``--export`` copies the four files
(types.MODEL_FILES) into ``lipsync_core/assets/demo_models/``. Every stage prints its wall time;
``recipe_summary.json`` keeps them. ``--scale 0.05`` runs the same recipe with 5% of the steps (a smoke run);
``--resume`` continues interrupted training stages from their latest checkpoints (finished stages are skipped).

``--jobs 2`` (default) uses both cores of a small CPU machine as two single-threaded lanes: the puppet clips
are written by two processes, and a second process writes and prepares the speakers only stage 1 sees, then
trains stage 1 (with its ``none`` twin when asked, then the decoder fine-tune once the VAE exists) while the VAE
and the renderer (and its fine-tune) train in this one;
when the second lane ends, this one takes both cores. The lanes share nothing but the prepared data and the VAE
file, and every stage seeds itself, so the weights depend on the lane layout only through the thread count's
floating-point rounding.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

from ..types import DEMO_MODELS, MODEL_FILES, LipSyncInputError
from .basis import fit_basis
from .common import StepHooks, lane_threads
from .dataset import merge_prepared
from .evaluate import EvalOptions, evaluate
from .motion import MotionTrainConfig, train_motion
from .prepare import PrepareOptions, prepare
from .puppet_data import make_puppet_videos
from .renderer import RendererTrainConfig, train_renderer
from .vae import VAETrainConfig, train_vae

# The demo's data: puppet speakers at 256 px (the frame size of real use: crops are shrunk and prefiltered as
# in inference), face crops at 64 px (f4 VAE -> 16x16 latents).
# 16 speakers x 6 clips. Session 8 tried 32 x 3 (the same footage, twice the faces and styles): stage 1's own
# opening correlation 0.77 -> 0.79, but the renderer followed the motion less (whole-job LMD 1.17x -> 1.31x the
# floor); not kept (docs/RESULTS.md). Stage 1 alone also trains on ``motion_speakers`` x ``motion_clips`` more
# speakers (dataset seed MOTION_DATA_SEED), in the mouth basis fitted on the training speakers: it learns a
# speaking style from the styles it has seen, and 48 speakers instead of 16 took its held-out LipLMD from
# 0.0368 to 0.0316 and its opening correlation from 0.80 to 0.89 (session 9, docs/RESULTS.md).
DEMO_DATA = {"train_speakers": 16, "train_clips": 6, "test_speakers": 4, "test_clips": 3, "size": 256,
             "sentences_per_clip": 2, "crop_size": 64, "motion_speakers": 32, "motion_clips": 3}
MOTION_DATA_SEED = 3  # seed 0: the training speakers, 1: the held-out ones
# Recipes: the data and the stage presets. ``gpu`` is the paper's scale for one GPU: puppets at 512 px,
# 256 px crops -> 64x64 latents (f4 VAE), the ``full`` presets of every stage (bf16 on CUDA by default);
# ``--scale`` shortens it (docs/TRAINING.md gives the expected cost).
RECIPES = {
    "demo": {"data": DEMO_DATA, "presets": {"vae": "demo", "motion": "demo", "renderer": "demo"}, "fine_tunes": True},
    "gpu": {"data": {"train_speakers": 48, "train_clips": 10, "test_speakers": 4, "test_clips": 3, "size": 512,
                     "sentences_per_clip": 2, "crop_size": 256},
            "presets": {"vae": "full", "motion": "full", "renderer": "full"}},
}


# The demo's last two image stages (issue 15, session 6; docs/RESULTS.md): the renderer fine-tuned against the
# closed-mouth shortcut (its context and references made unreliable, so the motion decides the mouth), then the
# VAE's decoder fine-tuned on the lips with the encoder frozen (every latent the renderer learnt stays as it was),
# half of its samples decoded beside another frame's upper latent rows (``mixed_upper``: session 6 measured that
# a decoder fine-tuned without it lets the clean upper rows reopen the mouth, shortcut share 73/49/72% at render
# seeds 0-2 against 73/63/86% with it, for 0.4 dB of mouth PSNR).
SHORTCUT_FINE_TUNE = {"steps": 3000, "lr": 5e-4, "random_copy_reference": 0.5, "context_from_other_frame": 0.9,
                      "one_sided_references": 0.9}
DECODER_FINE_TUNE = {"steps": 1000, "lr": 5e-4, "train_encoder": False, "mouth_weight": 10.0, "mixed_upper": 0.5}


def _steps(config, scale: float, steps: int | None = None):
    steps = max(int(round(config.steps * scale)), 10) if steps is None else int(steps)
    return replace(config, steps=steps, warmup=min(config.warmup, max(steps // 10, 1)),
                   checkpoint_every=max(min(config.checkpoint_every, steps // 3), 1),
                   log_every=max(min(config.log_every, steps // 10), 1))


class Stages:
    """Runs named stages, prints and records their wall time."""

    def __init__(self, work: Path) -> None:
        self.work, self.times, self.t0 = work, {}, time.perf_counter()

    def run(self, name: str, fn, done: Path | None = None):
        if done is not None and done.exists():
            print(f"== {name}: already done ({done})", flush=True)
            self.times[name] = 0.0
            return None
        print(f"== {name}", flush=True)
        t = time.perf_counter()
        result = fn()
        self.times[name] = round(time.perf_counter() - t, 1)
        print(f"== {name}: {self.times[name]:.1f} s (total {time.perf_counter() - self.t0:.0f} s)", flush=True)
        return result

    @property
    def wall(self) -> float:
        return round(time.perf_counter() - self.t0, 1)


class TakeOverThreads:
    """A between-steps hook (``StepHooks.before_step``) for the lane in this process: once the other lane's
    process has ended, this lane takes ``threads`` (the cores the two lanes shared), so the recipe's longer lane
    does not finish on one core while the other idles."""

    def __init__(self, other_done, threads: int) -> None:
        self.other_done, self.threads, self.taken = other_done, int(threads), False

    def __call__(self) -> None:
        if not self.taken and self.other_done():
            import torch

            self.taken = True
            if self.threads > torch.get_num_threads():
                torch.set_num_threads(self.threads)
                print(f"== lanes: the second lane has ended; this lane goes on with {self.threads} threads", flush=True)


def _beside(here, fn, args: tuple, threads: int, take_over: bool = False):
    """Run ``here()`` in this process while ``fn(*args, threads, False)`` runs in a spawned one, each with
    ``threads`` torch threads; ``fn``'s result. With ``take_over``, ``here`` is called with a
    :class:`TakeOverThreads` hook that gives it both lanes' threads once ``fn`` has returned.
    This process's thread count is restored afterwards, and the second process is stopped if either side fails
    (no orphan left training)."""
    import torch

    before = torch.get_num_threads()
    pool = get_context("spawn").Pool(1)
    try:
        torch.set_num_threads(threads)
        print(f"== lanes: stage 1 -> decoder fine-tune in a second process, VAE -> renderer here ({threads} thread(s) "
              "each)", flush=True)
        other = pool.apply_async(fn, (*args, threads, False))
        if take_over:
            here(TakeOverThreads(other.ready, 2 * threads))
        else:
            here()
        return other.get()
    finally:
        pool.terminate()  # idle after get(); stops a still-running lane when this side failed
        pool.join()
        torch.set_num_threads(before)


def _stage1_data(work: Path, d_train: Path, data: dict, options: PrepareOptions) -> Path:
    """The folder stage 1 trains on: the training speakers' clips, plus (``data["motion_speakers"]``) clips of
    more speakers that only stage 1 sees, written, prepared and merged here in the training speakers' mouth
    basis. One worker: this runs in the stage-1 lane beside the VAE, so it costs the recipe no wall time of its
    own (the image lane, the longer one, starts as soon as its own data is prepared)."""
    speakers = data.get("motion_speakers", 0)
    if not speakers:
        return d_train
    videos, more = work / "videos_motion", work / "data_motion_more"
    make_puppet_videos(videos, speakers, data.get("motion_clips", data["train_clips"]), MOTION_DATA_SEED,
                       data["size"], data["sentences_per_clip"], workers=1)
    prepare(videos, more, options, 1)
    return merge_prepared([d_train, more], work / "data_motion", basis_from=d_train)


def _motion_lane(work: Path, d_train: Path, data: dict, options: PrepareOptions, models: Path, motion_cfg, none_cfg,
                 decoder_cfg, resume: str | None, threads: int | None = None, progress: bool = True
                 ) -> tuple[dict, int]:
    """Stage 1's data (:func:`_stage1_data`), stage 1, (optionally) its no-reference twin and (optionally) the
    decoder fine-tune, in the main process or a lane process: (times, pid). The decoder fine-tune starts from
    the VAE the other lane trains, so this lane waits for that file (written atomically) when it gets there
    first; this lane is the shorter one, so the fine-tune costs the recipe no wall time."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    st = Stages(work)
    d_motion = st.run("stage-1 data", lambda: _stage1_data(work, d_train, data, options))
    st.run("train-motion", lambda: train_motion(d_motion, models, motion_cfg, resume=resume, progress=progress),
           models / "motion.safetensors")
    if none_cfg is not None:
        st.run("train-motion (none)", lambda: train_motion(d_motion, work / "motion_none", none_cfg, resume=resume,
                                                           progress=progress),
               work / "motion_none" / "motion.safetensors")
    if decoder_cfg is not None:
        while not Path(decoder_cfg.init).exists():
            time.sleep(2.0)
        st.run("decoder fine-tune", lambda: train_vae(d_train, work / "vae_decoder", decoder_cfg, resume),
               work / "vae_decoder" / "vae.safetensors")
    return st.times, os.getpid()


def run_recipe(work: Path, scale: float = 1.0, export: bool = False, landmarks: str = "track", workers: int = 2,
               compare_none: bool = False, resume: bool = False, data: dict | None = None,
               stage_steps: dict | None = None, jobs: int = 2, recipe: str = "demo") -> dict:
    if recipe not in RECIPES:
        raise LipSyncInputError(f"--recipe {recipe!r}: use one of {sorted(RECIPES)}.")
    if export and recipe != "demo":
        raise LipSyncInputError(f"--export replaces the shipped demo models; the '{recipe}' recipe's models stay "
                                "in WORK/models (point --models there).")
    presets = RECIPES[recipe]["presets"]
    data = {**RECIPES[recipe]["data"], **(data or {})}
    stage_steps = stage_steps or {}
    work.mkdir(parents=True, exist_ok=True)
    st = Stages(work)
    videos_train, videos_test = work / "videos_train", work / "videos_test"
    d_train, d_test = work / "data_train", work / "data_test"
    models = work / "models"
    sets = [(videos_train, d_train, data["train_speakers"], data["train_clips"], 0),
            (videos_test, d_test, data["test_speakers"], data["test_clips"], 1)]
    st.run("puppet data", lambda: [make_puppet_videos(videos, speakers, clips, seed, data["size"],
                                                      data["sentences_per_clip"], workers=max(jobs, 1))
                                   for videos, _, speakers, clips, seed in sets])
    options = PrepareOptions(crop_size=data["crop_size"], landmarks=landmarks)
    st.run("prepare", lambda: [prepare(videos, prepared, options, workers) for videos, prepared, *_ in sets])
    st.run("fit-basis", lambda: fit_basis(d_train), d_train / "mouth_model.safetensors")
    again = "latest" if resume else None
    vae_cfg = _steps(VAETrainConfig.preset(presets["vae"]), scale, stage_steps.get("vae"))
    motion_cfg = _steps(MotionTrainConfig.preset(presets["motion"]), scale, stage_steps.get("motion"))
    renderer_cfg = _steps(RendererTrainConfig.preset(presets["renderer"]), scale, stage_steps.get("renderer"))
    none_cfg = replace(motion_cfg, model={**motion_cfg.model, "reference_mode": "none"}) if compare_none else None
    fine_tunes = bool(RECIPES[recipe].get("fine_tunes"))
    shortcut_cfg = _steps(replace(renderer_cfg, **SHORTCUT_FINE_TUNE), scale, stage_steps.get("renderer fine-tune"))
    vae_file = work / "vae" / "vae.safetensors"
    decoder_cfg = (_steps(replace(vae_cfg, **DECODER_FINE_TUNE, init=str(vae_file)), scale,
                          stage_steps.get("decoder fine-tune")) if fine_tunes else None)

    def image_lane(between_steps=None) -> None:
        hooks = StepHooks(before_step=between_steps)
        st.run("train-vae", lambda: train_vae(d_train, work / "vae", vae_cfg, again, hooks=hooks), vae_file)
        first = work / "renderer_base" if fine_tunes else models
        st.run("train-renderer", lambda: train_renderer(d_train, first, renderer_cfg, vae_file, resume=again,
                                                        hooks=hooks),
               first / "renderer.safetensors")
        if not fine_tunes:
            return
        st.run("renderer fine-tune", lambda: train_renderer(d_train, models, shortcut_cfg, vae_file, resume=again,
                                                            init=first / "renderer.safetensors", hooks=hooks),
               models / "renderer.safetensors")

    lane_args = (work, d_train, data, options, models, motion_cfg, none_cfg, decoder_cfg, again)
    if jobs >= 2:  # stage 1 (then the decoder fine-tune) in a second process, VAE -> renderer here
        t_lanes = time.perf_counter()
        lane_times, lane_pid = _beside(image_lane, _motion_lane, lane_args, lane_threads(jobs), take_over=True)
        st.times["training wall (lanes)"] = round(time.perf_counter() - t_lanes, 1)
    else:
        image_lane()
        lane_times, lane_pid = _motion_lane(*lane_args)
    st.times.update(lane_times)
    if fine_tunes:
        shutil.copyfile(work / "vae_decoder" / "vae.safetensors", models / "vae.safetensors")
    report = st.run("eval", lambda: evaluate(models, d_test, EvalOptions(reference_frames=128, render_frames=8,
                                                                         fidelity_videos=videos_test)))
    (work / "eval.json").write_text(json.dumps(report, indent=1))
    (work / "eval.md").write_text(report["markdown"])
    summary = {"work": str(work), "recipe": recipe, "scale": scale,
               "steps": {"vae": vae_cfg.steps, "motion": motion_cfg.steps, "renderer": renderer_cfg.steps,
                         **({"renderer fine-tune": shortcut_cfg.steps, "decoder fine-tune": decoder_cfg.steps}
                            if fine_tunes else {})},
               "data": data, "eval": {k: v for k, v in report["motion"].items() if k != "per_clip"},
               "render": report["render"]}
    if compare_none:
        none_report = st.run("eval (none)", lambda: evaluate(models, d_test, EvalOptions(render_frames=0),
                                                             work / "motion_none" / "motion.safetensors"))
        summary["none"] = {k: v for k, v in none_report["motion"].items() if k != "per_clip"}
    if export:
        DEMO_MODELS.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES.values():
            shutil.copyfile(models / name, DEMO_MODELS / name)
        summary["exported"] = {name: (DEMO_MODELS / name).stat().st_size for name in MODEL_FILES.values()}
    summary["stage_seconds"] = st.times
    summary["jobs"] = jobs
    summary["stage1_pid"], summary["pid"] = lane_pid, os.getpid()
    summary["total_seconds"] = st.wall  # wall clock: with lanes, stage times overlap
    (work / "recipe_summary.json").write_text(json.dumps(summary, indent=1))
    print(report["markdown"])
    if compare_none:
        print(f"LipLMD: demo (audio_aware, n=128) {summary['eval']['lip_lmd']:.5f} vs none "
              f"{summary['none']['lip_lmd']:.5f}")
    print("stage times (s):", json.dumps(st.times), "total", summary["total_seconds"])
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lipsync_core.train.demo_recipe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="working folder (data, checkpoints, models, reports)")
    p.add_argument("--recipe", default="demo", choices=sorted(RECIPES),
                   help="demo: the shipped weights on a 2-core CPU; gpu: 512 px puppets, 256 px crops, full presets")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every stage's steps (0.05 = smoke run)")
    p.add_argument("--export", action="store_true", help="copy the models into lipsync_core/assets/demo_models/")
    p.add_argument("--landmarks", default="track", choices=("track", "truth"),
                   help="track the puppet videos like real ones (default) or read their exact mesh")
    p.add_argument("--workers", type=int, default=2, help="prepare processes")
    p.add_argument("--jobs", type=int, default=2,
                   help="parallel lanes: puppet-clip writers, and stage 1 trained beside VAE -> renderer (1: in turn)")
    p.add_argument("--compare-none", action="store_true",
                   help="also train and evaluate stage 1's no-reference variant (the paper's comparison)")
    p.add_argument("--no-compare-none", action="store_true", help=argparse.SUPPRESS)  # the default since session 8
    p.add_argument("--resume", action="store_true", help="continue interrupted training stages")
    p.add_argument("--vae-steps", type=int, help="override the VAE's steps")
    p.add_argument("--motion-steps", type=int, help="override stage 1's steps (also the none variant's)")
    p.add_argument("--renderer-steps", type=int, help="override stage 2's steps")
    p.add_argument("--train-speakers", type=int, help="default: the recipe's")
    p.add_argument("--train-clips", type=int, help="default: the recipe's")
    p.add_argument("--motion-speakers", type=int,
                   help="speakers only stage 1 trains on (0: none; default: the recipe's)")
    args = p.parse_args(argv)
    data = {k: v for k, v in (("train_speakers", args.train_speakers), ("train_clips", args.train_clips)) if v}
    if args.motion_speakers is not None:
        data["motion_speakers"] = args.motion_speakers
    run_recipe(args.work, args.scale, args.export, args.landmarks, args.workers, args.compare_none,
               args.resume, data, {"vae": args.vae_steps, "motion": args.motion_steps,
                                   "renderer": args.renderer_steps}, args.jobs, args.recipe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
