"""Command-line entry: ``python -m lipsync_core <command>``.

- ``run``: lip-sync a video file to an audio file (optionally in another clip's style);
- ``demo``: the whole job on the committed puppet-world clip and demo weights;
- ``bench``: per-stage throughput and peak memory of the pipeline.

Bad input ends with one line naming the input and the fix (exit code 2), never a
traceback alone, and never a partial output file. Arguments, the output path and the
input files are checked before any model or tracker is loaded; an output that is one
of the inputs is refused.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

# Only light modules here: every argument and input file is checked before torch, the models or
# the tracker are loaded, so a bad argument fails in well under 2 s (tests/test_bad_input.py).
from .render.settings import RenderSettings
from .types import (
    DEFAULT_MAX_GAP_SECONDS,
    DEMO_CLIPS,
    DEMO_MODELS,
    FACE_BACKENDS,
    GAP_POLICIES,
    LENGTH_POLICIES,
    PRECISIONS,
    SAMPLER_NAMES,
    LipSyncInputError,
)

if TYPE_CHECKING:
    from .pipeline import FileInputs, JobOptions, LipSyncModels

DEVICE_PATTERN = re.compile(r"(cpu|mps|(cuda|xpu)(:\d+)?)")


class _Parser(argparse.ArgumentParser):
    """argparse reporting a bad argument in one line (exit 2), like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see `{self.prog} --help`.\n")


def _add_render_options(p: argparse.ArgumentParser) -> None:
    d = RenderSettings()
    p.add_argument("--steps", type=int, default=d.steps, help=f"denoising steps (default {d.steps})")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, default=d.sampler)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--guidance", type=float, default=d.guidance,
                   help=f"how strongly the mouth follows the motion rather than the reference faces "
                   f"(default {d.guidance}; 1 = no guidance; renderers trained without motion dropout ignore it)")
    p.add_argument("--guided-steps", type=float, default=d.guided_steps,
                   help=f"share of the denoising steps that are guided, the noisiest first (default {d.guided_steps};"
                   " each guided step costs two)")
    p.add_argument("--chunk", type=int, default=d.chunk_size,
                   help="frames per chunk, rounded up to blocks of 8 (memory, never the result)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision)
    p.add_argument("--models", type=Path, default=DEMO_MODELS, help="folder of the .safetensors models")
    p.add_argument("--length", default=LENGTH_POLICIES[0], choices=LENGTH_POLICIES,
                   help="what to do when audio and video lengths differ")
    p.add_argument("--style-strength", type=float, default=1.0, help="0 = generic style, 1 = the reference's")
    p.add_argument("--no-face", choices=GAP_POLICIES, default=GAP_POLICIES[0],
                   help="frames where no face is found: fill in short tracker dropouts within one shot "
                   "(never black frames, cuts or a covered face), or pass every one through untouched")
    p.add_argument("--max-gap", type=float, default=DEFAULT_MAX_GAP_SECONDS, metavar="SECONDS",
                   help=f"longest run of face-less frames that may be filled in (default {DEFAULT_MAX_GAP_SECONDS})")
    p.add_argument("--face-backend", choices=FACE_BACKENDS, default=FACE_BACKENDS[0],
                   help="face landmarks: torch (MediaPipe's face mesh run in torch, shipped; the default), "
                   "mediapipe (the mediapipe package, when installed), insightface (needs its model pack)")


# RenderSettings fields -> the flags that set them (its errors name the field).
SETTING_FLAGS = {"sampler": "--sampler", "steps": "--steps", "seed": "--seed", "chunk_size": "--chunk",
                 "precision": "--precision", "guidance": "--guidance", "guided_steps": "--guided-steps"}  # fmt: skip


def _settings(args) -> RenderSettings:
    try:
        return RenderSettings(sampler=args.sampler, steps=args.steps, seed=args.seed, chunk_size=args.chunk,
                              precision=args.precision, guidance=args.guidance,
                              guided_steps=args.guided_steps)  # fmt: skip
    except LipSyncInputError as exc:
        name, _, rest = str(exc).partition(": ")
        raise LipSyncInputError(f"{SETTING_FLAGS.get(name, name)}: {rest}") from None


def _check_options(args) -> None:
    """The arguments every command shares, checked before anything is loaded."""
    _settings(args)
    if not math.isfinite(args.style_strength):
        raise LipSyncInputError(f"--style-strength: got {args.style_strength}; use a number such as 0.5 or 1.")
    if not math.isfinite(args.max_gap) or args.max_gap < 0:
        raise LipSyncInputError(f"--max-gap: got {args.max_gap}; use seconds >= 0 (0: never fill in a face).")
    if not DEVICE_PATTERN.fullmatch(args.device):
        raise LipSyncInputError(f"--device: '{args.device}' is not a torch device; use cpu, cuda, cuda:1 or mps.")
    from .weights import check_model_folder

    check_model_folder(args.models, "--models")


def _check_video(path: Path, what: str) -> None:
    """A readable video with at least 2 frames (headers only)."""
    from .media import probe_video

    info = probe_video(path, what)
    if info.frames_exact and info.frame_count < 2:
        raise LipSyncInputError(
            f"{what}: {path} has {info.frame_count} frame{'s' * (info.frame_count != 1)}; lip sync needs a video of "
            "at least 2 frames (to animate a still image, repeat it into a clip first)."
        )


def _check_run_inputs(args) -> None:
    """The output path and every input file of ``run``, before any model, tracker or heavy import."""
    from .audio.io import STYLE_AUDIO_FIX, probe_audio_file
    from .media import check_output_path

    check_output_path(args.out, {"video": args.video, "audio": args.audio, "style": args.style}, "--out")
    _check_video(args.video, "video")
    probe_audio_file(args.audio, "audio")
    if args.style is not None:
        _check_video(args.style, "style")
        probe_audio_file(args.style, "style", STYLE_AUDIO_FIX)


def _check_device(device: str) -> None:
    """That the device exists: after the light checks, before the audio is decoded and the models load
    (an accelerator needs torch to answer, about 1.5 s of import; the CPU does not)."""
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return
    import torch

    backend = {"cuda": torch.cuda, "xpu": getattr(torch, "xpu", None)}.get(kind)
    if kind == "mps":
        ok = torch.backends.mps.is_available()
    else:
        ok = backend is not None and backend.is_available() and int(index or 0) < backend.device_count()
    if not ok:
        raise LipSyncInputError(f"--device: {device} is not available on this machine; use --device cpu.")


def _job_options(args, fps: float) -> JobOptions:
    """The job's choices from the flags (after :func:`_check_options`)."""
    from .pipeline import JobOptions
    from .types import tracker_options

    return JobOptions(settings=_settings(args), length_policy=args.length, style_strength=args.style_strength,
                      tracker_options=tracker_options(args.no_face, args.max_gap, fps, args.device,
                                                      args.face_backend))


def _open_job(args, video: Path, audio: Path, style: Path | None) -> tuple[FileInputs, LipSyncModels, JobOptions]:
    """What ``run`` and ``demo`` do once their arguments and files are checked: the device checked, the inputs
    opened (the audio decoded: empty or broken sound fails here, before the models load), the models loaded
    and the job's options built from the flags (``bench`` builds the same, opening the inputs in its timing)."""
    from .pipeline import FileInputs, LipSyncModels

    _check_device(args.device)
    inputs = FileInputs.open(video, audio, style)
    models = LipSyncModels.from_folder(args.models, args.device)
    return inputs, models, _job_options(args, inputs.video.fps)


def _progress_bar():
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="frame", leave=True)
        bar.total = max(total, done)
        bar.n = done
        bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return update, close


def cmd_run(args) -> int:
    _check_options(args)
    _check_run_inputs(args)
    from .pipeline import lipsync_file

    inputs, models, options = _open_job(args, args.video, args.audio, args.style)
    update, close = _progress_bar()
    start = time.perf_counter()
    try:
        result = lipsync_file(args.video, args.audio, args.out, models, style_path=args.style, inputs=inputs,
                              options=options, progress=update)  # fmt: skip
    finally:
        close()
    seconds = time.perf_counter() - start
    for note in result.notes:
        print(f"note: {note}")
    h, w = result.track.frame_size
    print(f"wrote {args.out}: {result.num_frames} frames ({result.num_frames / result.fps:.3f} s) at "
          f"{result.fps:.3f} fps, {w}x{h}, in {seconds:.1f} s ({result.num_frames / seconds:.2f} frames/s)")
    return 0


def _demo_inputs() -> dict[str, Path]:
    clips = {"video": DEMO_CLIPS / "video.mp4", "audio": DEMO_CLIPS / "target.wav",
             "style": DEMO_CLIPS / "reference.mp4", "truth_video": DEMO_CLIPS / "target.mp4",
             "truth": DEMO_CLIPS / "target.truth.npz"}
    missing = [str(p) for p in clips.values() if not p.is_file()]
    if missing:
        raise LipSyncInputError(f"demo: missing {missing[0]}; the demo clips ship with the repository (git checkout).")
    return clips


def _side_by_side(columns: list) -> object:
    """Frames [T, H, W, 3] of several videos -> one strip per frame, each resized to the first's height."""
    import cv2
    import numpy as np

    h = columns[0].shape[1]
    resized = [c if c.shape[1] == h else np.stack([cv2.resize(f, (round(f.shape[1] * h / f.shape[0]), h),
                                                              interpolation=cv2.INTER_AREA) for f in c])
               for c in columns]
    return np.concatenate(resized, axis=2)


def _lip_lmd_vs_truth(models, result, truth_path: Path) -> float:
    """LipLMD of the predicted motion against the ground truth of the same person saying the new audio."""
    import numpy as np

    from .motion import lip_lmd

    truth = np.load(truth_path)["landmarks"]
    n = min(len(truth), len(result.motion))
    neutral = models.mouth.neutral_shape(result.track.landmarks[result.track.usable])
    true_params = models.mouth.encode(truth[:n], neutral=neutral)
    return lip_lmd(models.mouth.decode(result.motion.params[:n], neutral), models.mouth.decode(true_params, neutral))


def cmd_demo(args) -> int:
    from .media import check_output_path

    _check_options(args)
    clips = _demo_inputs()
    if args.out.exists() and not args.out.is_dir():
        raise LipSyncInputError(f"--out: {args.out} is a file; the demo writes two videos into a folder, name one.")
    result_path, strip_path = args.out / "result.mp4", args.out / "side_by_side.mp4"
    for path in (result_path, strip_path):
        check_output_path(path, clips, "--out")

    from .media import VideoWriter, read_video
    from .pipeline import lipsync_file

    inputs, models, options = _open_job(args, clips["video"], clips["audio"], clips["style"])
    update, close = _progress_bar()
    start = time.perf_counter()
    try:
        result = lipsync_file(clips["video"], clips["audio"], result_path, models, style_path=clips["style"],
                              inputs=inputs, options=options, progress=update)  # fmt: skip
    finally:
        close()
    seconds = time.perf_counter() - start
    source, _ = read_video(clips["video"])
    output, _ = read_video(result_path)
    truth, _ = read_video(clips["truth_video"])
    n = min(len(output), len(truth))
    with VideoWriter(strip_path, result.fps, audio=result.wave, sample_rate=16000, what="--out") as writer:
        writer.write(_side_by_side([source[result.frame_indices[:n]], output[:n], truth[:n]]))
    print(f"wrote {result_path} ({result.num_frames} frames at {result.fps:g} fps) in {seconds:.1f} s")
    print(f"wrote {strip_path}: input | output | ground truth")
    print(f"LipLMD of the predicted lips vs the ground truth: {_lip_lmd_vs_truth(models, result, clips['truth']):.4f} "
          "(inter-ocular units)")
    return 0


def cmd_bench(args) -> int:
    import resource
    import tempfile

    _check_options(args)
    if args.video is None:
        clips = _demo_inputs()
    else:
        from .audio.io import probe_audio_file

        clips = {"video": args.video, "audio": args.audio or args.video}
        _check_video(args.video, "--video")
        probe_audio_file(clips["audio"], "--audio")

    import torch

    from .pipeline import FileInputs, LipSyncModels, lipsync_file

    _check_device(args.device)
    models = LipSyncModels.from_folder(args.models, args.device)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()  # the whole job from opening the inputs on, as the bench has always timed it
        inputs = FileInputs.open(clips["video"], clips["audio"], clips.get("style"))
        result = lipsync_file(clips["video"], clips["audio"], Path(folder) / "bench.mp4", models,
                              style_path=clips.get("style"), inputs=inputs,
                              options=_job_options(args, inputs.video.fps))  # the options `run` builds
        wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = result.num_frames
    for note in result.notes:
        print(f"note: {note}")
    print(f"{n} frames at {result.fps:g} fps, {args.steps} {args.sampler} steps, chunk {args.chunk}, "
          f"device {args.device}, face backend {args.face_backend}, torch threads {torch.get_num_threads()}")
    print(f"{'stage':<26}{'seconds':>9}{'frames/s':>10}{'share':>8}")
    for stage, sec in sorted(result.seconds.items(), key=lambda kv: -kv[1]):
        print(f"{stage:<26}{sec:>9.2f}{n / max(sec, 1e-9):>10.1f}{sec / wall:>8.0%}")
    print(f"{'whole job':<26}{wall:>9.2f}{n / wall:>10.2f}{1:>8.0%}")
    print(f"peak resident memory: {peak_mb:.0f} MB")
    return 0


def cmd_personalize(args) -> int:
    """Fine-tune the base models on the person's own footage (lipsync_core/train/personalize.py)."""
    from .audio.io import probe_audio_file
    from .weights import check_model_folder

    if not DEVICE_PATTERN.fullmatch(args.device):
        raise LipSyncInputError(f"--device: '{args.device}' is not a torch device; use cpu, cuda, cuda:1 or mps.")
    for video in args.video:
        _check_video(video, "--video")
        wav = video.with_suffix(".wav")
        probe_audio_file(wav if wav.is_file() else video, "--video",
                         "give footage with its sound: the person speaking (a .wav of the same name next to the video "
                         "is used instead of the video's own track)")
    check_model_folder(args.base, "--base")
    _check_device(args.device)
    from .train.personalize import Footage, PersonalizeOptions, personalize

    options = PersonalizeOptions(steps=args.steps, minutes=args.minutes, device=args.device,
                                 validation=args.validation, jobs=args.jobs, overwrite=args.overwrite,
                                 resume=args.resume, seed=args.seed, landmarks=args.landmarks,
                                 tune_decoder=not args.no_decoder, keep_work=args.keep_work,
                                 vae=None if args.vae is None else str(args.vae), crop_size=args.crop_size,
                                 renderer_preset=args.renderer_preset)
    start = time.perf_counter()
    record = personalize([Footage(str(v), path=v) for v in args.video], args.out, args.base, options,
                         progress=not args.quiet)
    for stage, v in record["validation"].items():
        print(f"{stage}: {record['steps'][stage]} steps, held-out loss {v['val_loss_first']:.4g} (base) -> "
              f"{v['val_loss_best']:.4g} (best, step {v['best_step']})")
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s: use it with `python -m lipsync_core run "
          f"--models {args.out} ...`")
    return 0


def _add_personalize(sub) -> None:
    from .train.personalize import DEFAULT_STEPS, VALIDATION_SHARE  # light: numpy and types only

    p = sub.add_parser("personalize", help="fine-tune both stages on one person's own footage",
                       description="Fine-tune the base models on one person's footage (docs/TRAINING.md, Personalize).")
    p.add_argument("--video", type=Path, nargs="+", required=True,
                   help="clips of the person speaking, with sound (a .wav of the same name is used when present)")
    p.add_argument("--out", type=Path, required=True, help="the new models folder (use it with `run --models`)")
    p.add_argument("--base", type=Path, default=DEMO_MODELS, help="the models to start from (default: the demo's)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"renderer steps; stage 1 and the VAE decoder take fixed shares (default {DEFAULT_STEPS})")
    p.add_argument("--minutes", type=float, help="wall-clock budget: training stops at it, best checkpoints kept")
    p.add_argument("--device", default="cpu", help="torch device (cuda: bf16 mixed precision)")
    p.add_argument("--validation", type=float, default=VALIDATION_SHARE,
                   help=f"share of the footage's tail held out for validation (default {VALIDATION_SHARE})")
    p.add_argument("--jobs", type=int, default=2, help="parallel lanes: stage 1 in a second process (1: in turn)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the models already in --out")
    p.add_argument("--no-decoder", action="store_true", help="keep the base VAE's decoder as it is")
    p.add_argument("--vae", type=Path, help="train the renderer anew in the latent space of YOUR VAE (an SD-style "
                   ".safetensors from ComfyUI/models/vae, or a diffusers AutoencoderKL folder): real footage at real "
                   "resolution, on a GPU (give --steps in the tens of thousands or --minutes)")
    p.add_argument("--crop-size", type=int, default=256, help="face crop size with --vae: 256 or 512 px")
    p.add_argument("--renderer-preset", default="full", choices=("full", "demo"),
                   help="the renderer's size with --vae: full (the paper's) or demo (small, CPU)")
    p.add_argument("--keep-work", action="store_true", help="keep the prepared footage, checkpoints and logs")
    p.add_argument("--landmarks", default="track", choices=("track", "auto"),
                   help="track the face (default) or read a puppet clip's exact mesh (.truth.npz; tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_personalize)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lipsync_core", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="lip-sync a video to an audio track")
    run.add_argument("--video", type=Path, required=True, help="the video whose lower face is repainted")
    run.add_argument("--audio", type=Path, required=True, help="the new audio (wav/mp3/flac or a video's audio)")
    run.add_argument("--style", type=Path, help="a clip (video with audio) of the speaking style to keep; "
                                                 "default: the input video itself")
    run.add_argument("--out", type=Path, required=True, help="the output .mp4")
    _add_render_options(run)
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="the whole job on the committed puppet-world clips and demo weights")
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for result.mp4 and side_by_side.mp4")
    _add_render_options(demo)
    demo.set_defaults(func=cmd_demo)
    bench = sub.add_parser("bench", help="per-stage throughput and peak memory (default: on the demo clips)")
    bench.add_argument("--video", type=Path)
    bench.add_argument("--audio", type=Path)
    _add_render_options(bench)
    bench.set_defaults(func=cmd_bench)
    _add_personalize(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a bad argument (already reported in one line)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except LipSyncInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file system problem no check foresaw (a disk that fills up, a file that vanished)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}; check the path, its permissions and free space.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
