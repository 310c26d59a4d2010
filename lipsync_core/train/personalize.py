"""Personalize: fine-tune both stages on one person's own footage (issue 16).

    python -m lipsync_core personalize --video A.mp4 [B.mp4 ...] --out DIR [--base MODELS] [--steps N] [--minutes M]

No talking-face weights can be had, so the realistic route to quality on a real face is the footage of the person
being dubbed. From base models (default: the shipped demo models) this:

1. prepares the footage with ``train prepare``'s code (track, crop at the renderer's size, audio features), all
   clips one speaker; holds out the tail of the footage (``validation`` share, at least ``MIN_VALIDATION_FRAMES``)
   for validation;
2. fine-tunes, each stage with ``train``'s own loop (checkpoints, resume, index-seeded samples): the VAE's decoder
   (its encoder frozen, so the renderer's latent space stays put) on the person's crops; the renderer by
   self-reconstruction (references >= 2 frames from the target, as ``train-renderer`` draws them); stage 1 on the
   person's audio/mouth pairs, style references from other parts of the footage;
3. keeps each stage's best held-out checkpoint and writes a models folder ``run --models DIR`` and the nodes load,
   every file recording the base, the footage and the steps (``personalized`` in its metadata).

The budget is a step count (``steps``: the renderer's; stage 1 and the decoder take fixed shares) and/or a wall
clock (``minutes``). On a CPU the stages run as two lanes (``jobs=2``: stage 1 in a second process), as the demo
recipe does. Memory holds the footage's latents (float16), at most ``MAX_DECODER_CROPS`` crops for the decoder and
one batch, whatever the footage's length. An interrupted run continues with ``resume``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

# Light imports only (numpy, types): the command line reads this module's defaults before checking its arguments.
from ..types import DEMO_MODELS, MODEL_FILES, LipSyncInputError

SPEAKER = "person"
WORK_DIR = ".personalize"  # inside the output folder while training (checkpoints, prepared footage, logs)
RECORD_FILE = "personalize.json"
INPUTS_FILE = "inputs.txt"  # in the work folder: the caller's fingerprint of the inputs (a node resumes its own run)
MIN_FOOTAGE_SECONDS = 4.0  # usable (face found) footage, validation tail included
MIN_VALIDATION_FRAMES = 16
VALIDATION_SHARE = 0.15
MAX_DECODER_CROPS = 4096
# The default budget: renderer steps; stage 1 and the decoder take these shares of them (docs/TRAINING.md,
# "Personalize", gives the timing that chose it).
DEFAULT_STEPS = 1200
STAGE_SHARES = {"vae": 1 / 3, "motion": 0.5}
DECODER_TIME_SHARE = 0.25  # of a wall-clock budget, for the decoder (the renderer lane's first stage)
ONE_LANE_IMAGE_SHARE = 0.7  # with one lane (the node), decoder + renderer's share of a wall-clock budget


@dataclass(frozen=True)
class Footage:
    """One clip of the person: a video file (the command line), or frames [T,H,W,3] + fps + 16 kHz mono wave
    (the node)."""

    name: str
    path: Path | None = None
    frames: object = None
    fps: float | None = None
    wave: np.ndarray | None = None


@dataclass(frozen=True)
class PersonalizeOptions:
    steps: int = DEFAULT_STEPS
    minutes: float | None = None
    device: str = "cpu"
    validation: float = VALIDATION_SHARE
    jobs: int = 2
    overwrite: bool = False
    resume: bool = False
    seed: int = 0
    landmarks: str = "track"  # "auto": a puppet clip's exact mesh (.truth.npz) instead of tracking (tests)
    tune_decoder: bool = True
    keep_work: bool = False
    stage_steps: dict = field(default_factory=dict)  # per-stage overrides: {"renderer"|"motion"|"vae": steps}
    # The route to real footage at real resolution: a renderer trained from scratch in the latent space of the
    # user's own VAE (an SD-style file or a diffusers folder) at ``crop_size`` px, with ``renderer_preset``.
    vae: str | None = None
    crop_size: int = 256
    renderer_preset: str = "full"

    def check(self) -> None:
        if self.steps < 1:
            raise LipSyncInputError(f"--steps: got {self.steps}; use at least 1 (default {DEFAULT_STEPS}).")
        if self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0):
            raise LipSyncInputError(f"--minutes: got {self.minutes}; use a positive number of minutes.")
        if not 0 < self.validation < 0.5:
            raise LipSyncInputError(f"--validation: got {self.validation}; use a share between 0 and 0.5 (e.g. 0.15).")
        if self.vae is not None:
            if not Path(self.vae).exists():
                raise LipSyncInputError(f"--vae: {self.vae} does not exist; give your VAE's .safetensors file (e.g. "
                                        "ComfyUI/models/vae/...) or a diffusers AutoencoderKL folder.")
            if self.crop_size < 64 or self.crop_size % 64:
                raise LipSyncInputError(f"--crop-size: got {self.crop_size}; use 256 or 512 (a multiple of 64).")

    @property
    def own_vae(self) -> bool:
        return self.vae is not None

    def steps_of(self, stage: str) -> int:
        if stage in self.stage_steps:
            return int(self.stage_steps[stage])
        return max(1, round(self.steps * STAGE_SHARES.get(stage, 1.0)))


@dataclass
class Callbacks:
    """How a caller follows and stops a run: ``progress(stage, step, total, val_loss)`` after each step,
    ``before_step()`` raises to cancel (the node: ComfyUI's interrupt)."""

    progress: Callable[[str, int, int, float | None], None] | None = None
    before_step: Callable[[], None] | None = None


# ----------------------------------------------------------------------------- checks (nothing written)


def base_files(base: str | Path | dict, need_vae: bool = True) -> dict[str, Path]:
    """The base models' files (a folder, or kind -> file as a node's bundle holds them), checked: a VAE is needed
    (the renderer's latent space) unless the renderer is trained anew in the user's own VAE."""
    from ..weights import check_kind, check_model_folder

    if isinstance(base, dict):
        files = {kind: Path(path) for kind, path in base.items()}
        for kind, path in files.items():
            check_kind(path, kind)
        base = ", ".join(str(p) for p in files.values())
    else:
        files = check_model_folder(base, "--base")
    if need_vae and "vae" not in files:
        raise LipSyncInputError(f"--base: {base} has no {MODEL_FILES['vae']}; personalize needs the renderer's own VAE "
                                "in the base folder (the shipped demo models have one).")
    return files


def check_base(files: dict[str, Path], own_vae: bool = False) -> dict:
    """The base models must fit each other and this pack's footage preparation; returns the renderer's config
    (only stage 1 and the mouth model matter when the renderer is trained anew: ``own_vae``)."""
    from ..weights import CONFIG_KEY, read_header

    motion = json.loads(read_header(files["motion"]).get(CONFIG_KEY, "{}"))
    kind = (motion.get("feature_spec") or {}).get("kind")
    if kind != "logmel":
        raise LipSyncInputError(f"--base: {files['motion']} was trained on '{kind}' audio features; personalize "
                                "computes log-mel features: use base models trained on them (the demo models are).")
    if own_vae:
        return {}
    renderer, vae = (json.loads(read_header(files[k]).get(CONFIG_KEY, "{}")) for k in ("renderer", "vae"))
    if int(vae.get("latent_channels", -1)) != int(renderer.get("latent_channels", -2)):
        raise LipSyncInputError(
            f"--base: the renderer works on {renderer.get('latent_channels')}-channel latents but {files['vae']} makes "
            f"{vae.get('latent_channels')}; use a base folder whose models were trained together.")
    factor = 2 ** (len(vae.get("block_out_channels", [])) - 1)
    if int(renderer["latent_size"]) * factor != int(renderer["crop_size"]):
        raise LipSyncInputError(
            f"--base: the renderer's {renderer['latent_size']}px latent is not its {renderer['crop_size']}px crop "
            f"through {files['vae']} (downsampling {factor}); use a base folder whose models were trained together.")
    return renderer


def check_output(out: Path, options: PersonalizeOptions) -> None:
    """An existing output folder is never overwritten without ``overwrite`` (``resume`` continues its run)."""
    if out.exists() and not out.is_dir():
        raise LipSyncInputError(f"--out: {out} is a file; name a folder for the personalized models.")
    if out.is_dir() and any(out.iterdir()):
        if options.resume and (out / WORK_DIR).is_dir():
            return
        if not options.overwrite:
            what = "an unfinished run (pass --resume to continue it)" if (out / WORK_DIR).is_dir() else "files"
            raise LipSyncInputError(f"--out: {out} already holds {what}; pass --overwrite to replace it, or name "
                                    "another folder.")


# ----------------------------------------------------------------------------- footage


def prepare_footage(footage: list[Footage], folder: Path, crop_size: int, landmarks: str) -> list[dict]:
    """Every clip prepared as one speaker into ``folder/clips``; one line for a clip without face or audio."""
    from ..audio import load_audio_file
    from ..media import ArrayFrames, VideoFileFrames
    from .prepare import PrepareOptions, prepare_source

    metas = []
    for i, clip in enumerate(footage):
        options = PrepareOptions(crop_size=crop_size, landmarks=landmarks, speaker=SPEAKER)
        key = f"{SPEAKER}__{i:02d}_{Path(clip.name).stem}"
        if clip.path is not None:
            truth = clip.path.with_suffix(".truth.npz")
            exact = None
            if landmarks == "auto" and truth.is_file():
                from ..synthetic.io import read_truth

                exact = read_truth(truth)["landmarks"]
            wav = clip.path.with_suffix(".wav")
            meta = prepare_source(VideoFileFrames(clip.path, clip.name),
                                  lambda p=clip.path, w=wav: load_audio_file(w if w.is_file() else p),
                                  key, SPEAKER, folder, options, clip.name, exact)
        else:
            meta = prepare_source(ArrayFrames(clip.frames, clip.fps, clip.name), lambda c=clip: c.wave, key, SPEAKER,
                                  folder, options, clip.name)
        if meta["usable_frames"] == 0:
            raise LipSyncInputError(f"{clip.name}: no face was found in it; give footage where the person's face is "
                                    "visible.")
        metas.append(meta)
    seconds = sum(m["usable_frames"] / m["fps"] for m in metas)
    if seconds < MIN_FOOTAGE_SECONDS:
        raise LipSyncInputError(
            f"footage: {seconds:.1f} s with a face found is too short to learn from; give at least "
            f"{MIN_FOOTAGE_SECONDS:g} s of the person speaking (a minute or more helps).")
    return metas


def split_tail(prepared: Path, data: Path, share: float) -> dict:
    """The last ``share`` of the footage (at least ``MIN_VALIDATION_FRAMES``, from the last clip backwards) into
    ``data/val``, the rest into ``data/train``; returns what was held out."""
    from .dataset import CLIPS_DIR, load_clip, read_meta
    from .prepare import write_clip

    metas = [read_meta(p) for p in sorted((prepared / CLIPS_DIR).glob("*.json"))]
    total = sum(m["frames"] for m in metas)
    left = max(int(round(share * total)), MIN_VALIDATION_FRAMES)
    held = {}
    for meta in reversed(metas):
        take = min(left, meta["frames"])
        if meta["frames"] - take < MIN_VALIDATION_FRAMES:  # a head too short to train on: all of it held out
            take = meta["frames"]
        held[meta["key"]] = take
        left -= take
        if left <= 0:
            break
    for meta in metas:
        clip = load_clip(prepared / CLIPS_DIR / f"{meta['key']}.npz", with_crops=True)
        cut = meta["frames"] - held.get(meta["key"], 0)
        for name, part in (("train", slice(0, cut)), ("val", slice(cut, meta["frames"]))):
            n = part.stop - part.start
            if n <= 0:
                continue
            arrays = clip_arrays(clip, part)
            sub = {**meta, "frames": n, "usable_frames": int(arrays["usable"].sum()), "held_out": name == "val",
                   "first_frame": part.start}
            write_clip(data / name / CLIPS_DIR, sub, arrays)
    return {"frames": total, "validation_frames": int(sum(held.values())), "validation_share": share}


def clip_arrays(clip, part: slice) -> dict[str, np.ndarray]:
    """A prepared clip's arrays over frames ``part`` (its wave cut at the same times)."""
    from ..audio import TARGET_RATE
    from .dataset import wave_int16

    per_sample = TARGET_RATE / clip.fps
    wave = clip.wave[int(round(part.start * per_sample)):int(round(part.stop * per_sample))]
    return {"crops": clip.crops[part], "landmarks": clip.landmarks[part], "detected": clip.detected[part],
            "usable": clip.usable[part], "crop_transforms": clip.crop_transforms[part],
            "rotations": clip.rotations[part], "features": clip.features[part], "silence": clip.silence[part],
            "wave": wave_int16(wave)}


# ----------------------------------------------------------------------------- the stages


def stage_configs(options: PersonalizeOptions) -> dict:
    """Each stage's training config: the demo preset's batch, a fine-tuning learning rate, validation every
    ``log_every`` steps (at most 50; 10 for stage 1), a checkpoint every third of the run or 100 steps (resume)."""
    from .motion import MotionTrainConfig
    from .renderer import RendererTrainConfig
    from .vae import VAETrainConfig

    cpu = options.device == "cpu"

    def tuned(config, stage: str, lr: float, every: int = 50):
        steps = options.steps_of(stage)
        return replace(config, steps=steps, lr=lr, warmup=min(20, max(steps // 10, 1)), seed=options.seed,
                       log_every=max(1, min(every, steps // 6)), checkpoint_every=max(1, min(100, steps // 3)),
                       cpu=cpu)

    if options.own_vae:  # from scratch: the preset's learning rate, an EMA for thousands of steps
        preset = RendererTrainConfig.preset(options.renderer_preset)
        renderer = tuned(replace(preset, ema_decay=0.999), "renderer", preset.lr)
    else:
        renderer = tuned(replace(RendererTrainConfig.preset("demo"), ema_decay=0.99), "renderer", 3e-4)
    return {
        "vae": tuned(replace(VAETrainConfig.preset("demo"), train_encoder=False, max_frames=MAX_DECODER_CROPS),
                     "vae", 3e-4),
        "renderer": renderer,
        # Stage 1 overfits a few seconds of one speaker within 50 steps at 2e-4 (held-out loss up from step 50 on,
        # docs/TRAINING.md): a lower rate, validated every 10 steps, the best kept (the base's when nothing helps).
        "motion": tuned(MotionTrainConfig.preset("demo"), "motion", 5e-5, every=10),
    }


def _hooks(stage: str, callbacks: Callbacks, deadline_s: float | None):
    from .common import StepHooks

    report = callbacks.progress

    def progress(step: int, total: int, logged: dict) -> None:
        if report is not None:
            report(stage, step, total, logged.get("val_loss"))

    deadline = None if deadline_s is None else time.perf_counter() + deadline_s
    return StepHooks(before_step=callbacks.before_step, deadline=deadline, progress=progress)


def _motion_stage(work: Path, files: dict, config, resume: str | None, seconds: float | None,
                  threads: int | None = None, progress: bool = True, callbacks: Callbacks | None = None) -> dict:
    """Stage 1 fine-tuned on the footage (here, or in a lane process: ``threads`` given)."""
    import torch

    from .motion import train_motion

    if threads:
        torch.set_num_threads(threads)
    out = work / "motion"
    if (out / "motion.safetensors").is_file():
        return json.loads((out / "motion_run" / "train_summary.json").read_text())
    return train_motion(work / "data" / "train", out, config, files["mouth_model"], resume, progress,
                        init=files["motion"], val_data=work / "data" / "val",
                        hooks=_hooks("motion", callbacks or Callbacks(), seconds))


def _image_stages(work: Path, files: dict, configs: dict, options: PersonalizeOptions, resume: str | None,
                  seconds: float | None, callbacks: Callbacks, progress: bool) -> dict:
    """The VAE's decoder, then the renderer (against the base VAE: its encoder, hence the latents, is unchanged)."""
    from .renderer import train_renderer
    from .vae import train_vae

    summaries = {}
    data = work / "data"
    t0 = time.perf_counter()
    if options.tune_decoder and not options.own_vae:
        out = work / "vae"
        if (out / "vae.safetensors").is_file():
            summaries["vae"] = json.loads((out / "vae_run" / "train_summary.json").read_text())
        else:
            budget = None if seconds is None else seconds * DECODER_TIME_SHARE
            config = replace(configs["vae"], init=str(files["vae"]), model=vae_model(files["vae"]))
            summaries["vae"] = train_vae(data / "train", out, config, resume, progress, val_data=data / "val",
                                         hooks=_hooks("vae", callbacks, budget))
    out = work / "renderer"
    if (out / "renderer.safetensors").is_file():
        summaries["renderer"] = json.loads((out / "renderer_run" / "train_summary.json").read_text())
    else:
        left = None if seconds is None else max(seconds - (time.perf_counter() - t0), 1.0)
        summaries["renderer"] = train_renderer(data / "train", out, configs["renderer"], options.vae or files["vae"],
                                               files["mouth_model"], resume, progress,
                                               init=None if options.own_vae else files["renderer"],
                                               val_data=data / "val", hooks=_hooks("renderer", callbacks, left))
    return summaries


def vae_model(path: Path) -> dict:
    """The ``VAETrainConfig.model`` of a pack VAE file (its own architecture: the base may not be the demo's)."""
    from ..weights import CONFIG_KEY, read_header

    config = json.loads(read_header(path).get(CONFIG_KEY, "{}"))
    keys = ("latent_channels", "block_out_channels", "layers_per_block", "norm_num_groups", "mid_block_add_attention")
    return {k: config[k] for k in keys if k in config}


# ----------------------------------------------------------------------------- the whole run


def personalize(footage: list[Footage], out: str | Path, base: str | Path | dict = DEMO_MODELS,
                options: PersonalizeOptions | None = None, callbacks: Callbacks | None = None,
                progress: bool = True, inputs: str | None = None) -> dict:
    """Fine-tune ``base`` on ``footage`` into the models folder ``out``; returns the record (``out/personalize.json``,
    with ``inputs``: the caller's fingerprint of what it was made from, so a node can tell it need not retrain).

    Every bad input fails with one line before anything is written.
    """
    options = options or PersonalizeOptions()
    callbacks = callbacks or Callbacks()
    out = Path(out)
    options.check()
    if not footage:
        raise LipSyncInputError("--video: give at least one clip of the person speaking.")
    check_output(out, options)
    files = base_files(base, need_vae=not options.own_vae)
    renderer_config = check_base(files, options.own_vae)
    crop_size = options.crop_size if options.own_vae else int(renderer_config["crop_size"])
    t0 = time.perf_counter()
    work = out / WORK_DIR
    data = work / "data"
    if not (data / "split.json").is_file():
        # Prepared away from the output first: footage without a face or too short leaves nothing behind.
        with tempfile.TemporaryDirectory(prefix="stylelipsync-personalize-") as tmp:
            prepare_footage(footage, Path(tmp), crop_size, options.landmarks)
            if options.overwrite:
                remove_outputs(out)
            split = split_tail(Path(tmp), data, options.validation)
        (data / "split.json").write_text(json.dumps(split, indent=1))
        (work / INPUTS_FILE).write_text(inputs or "")
    split = json.loads((data / "split.json").read_text())
    prepare_seconds = round(time.perf_counter() - t0, 1)
    configs = stage_configs(options)
    resume = "latest" if options.resume else None
    seconds = None if options.minutes is None else max(options.minutes * 60 - prepare_seconds, 1.0)
    t_train = time.perf_counter()
    if options.jobs >= 2:
        from .common import lane_threads
        from .demo_recipe import _beside

        summaries: dict = {}

        def here() -> None:
            summaries.update(_image_stages(work, files, configs, options, resume, seconds, callbacks, progress))

        summaries["motion"] = _beside(here, _motion_stage, (work, files, configs["motion"], resume, seconds),
                                      lane_threads(options.jobs))
    else:  # one lane: the image stages get ONE_LANE_IMAGE_SHARE of a time budget, stage 1 what is left
        image_seconds = None if seconds is None else seconds * ONE_LANE_IMAGE_SHARE
        summaries = _image_stages(work, files, configs, options, resume, image_seconds, callbacks, progress)
        left = None if seconds is None else max(seconds - (time.perf_counter() - t_train), 1.0)
        summaries["motion"] = _motion_stage(work, files, configs["motion"], resume, left, None, progress, callbacks)
    record = {
        "inputs": inputs, "base": str(base) if not isinstance(base, dict) else {k: str(v) for k, v in base.items()},
        "footage": [c.name for c in footage], "frames": split["frames"],
        "validation_frames": split["validation_frames"], "crop_size": crop_size,
        "steps": {stage: s["steps"] for stage, s in summaries.items()},
        "validation": {stage: {k: s.get(k) for k in ("val_loss_first", "val_loss_best", "best_step")}
                       for stage, s in summaries.items()},
        "stopped_by_time": sorted(stage for stage, s in summaries.items() if s.get("stopped") == "time"),
        "options": {k: v for k, v in asdict(options).items() if k not in ("overwrite", "resume", "keep_work")},
        "seconds": {"prepare": prepare_seconds, "train": round(time.perf_counter() - t_train, 1)},
    }
    export_models(work, files, out, record, options)
    record["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    (out / RECORD_FILE).write_text(json.dumps(record, indent=1))
    if not options.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return record


def remove_outputs(out: Path) -> None:
    """What a personalize run writes into ``out`` (models, record, work folder); nothing else of the folder."""
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    for name in (*MODEL_FILES.values(), RECORD_FILE):
        (out / name).unlink(missing_ok=True)


def export_models(work: Path, files: dict, out: Path, record: dict, options: PersonalizeOptions) -> None:
    """The models folder: the fine-tuned files (best held-out weights) with ``personalized`` in their metadata,
    the base's mouth model (its basis is what the models were trained with); the user's own VAE in the pack's
    format when the renderer was trained in its latent space."""
    from ..models.io import load_model, save_model
    from ..weights import load_tensors
    from .vae import load_vae

    trained = {"motion": work / "motion" / "motion.safetensors", "renderer": work / "renderer" / "renderer.safetensors"}
    if not options.own_vae:
        trained["vae"] = work / "vae" / "vae.safetensors" if options.tune_decoder else files["vae"]
    for kind, path in trained.items():
        extra = {k: v for k, v in load_tensors(path, kind).extra.items() if k != "tensors_sha256"}
        save_model(load_model(path, kind), out / MODEL_FILES[kind], extra={**extra, "personalized": record})
    if options.own_vae:
        save_model(load_vae(options.vae).eval(), out / MODEL_FILES["vae"],
                   extra={"source": str(options.vae), "personalized": record})
    shutil.copyfile(files["mouth_model"], out / MODEL_FILES["mouth_model"])
