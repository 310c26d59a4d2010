"""``train-motion``: stage 1 (the audio-aware style Transformer) on prepared clips.

A sample is L consecutive frames of one clip (audio features -> mouth params) and a style reference of
n consecutive frames of the *same speaker at other times*: the speaker's other clips, concatenated in a
random order, a random n-frame window of them (never the target clip, so never overlapping it; a speaker
with a single clip gives the frames of that clip outside the target window). Loss = ``motion_loss``
(L1 params + lambda L1 lip vertices through the mouth basis), over usable target frames only. Reference
dropout is the model's own (its config).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.io import load_model, save_model
from ..models.motion import LipMotionTransformer, motion_loss
from ..motion import MouthModel
from ..types import FeatureSpec, LipSyncInputError
from .common import HeldOutValidation, PresetConfig, StepHooks, finish, fit, fixed_batch, seeded_accelerator, start_run
from .dataset import ClipData, basis_path, load_basis, load_dataset

MOTION_PRESETS: dict[str, dict] = {
    # The paper: d = 256, 8 heads, N1 = 3, w = 5, L = 64, n = 256, lambda = 300.
    "full": {
        "model": {"d_model": 256, "num_heads": 8, "decoder_layers": 3, "audio_encoder_layers": 2,
                  "lip_encoder_layers": 2, "ff_dim": 1024, "window": 5, "dropout": 0.1, "reference_dropout": 0.2,
                  "vertex_loss_weight": 300.0},
        "clip_frames": 64, "reference_frames": 256, "batch_size": 32, "steps": 100_000, "lr": 1e-4,
        "warmup": 1000, "checkpoint_every": 2000, "log_every": 100,
    },
    # Small enough for a 2-core CPU in minutes; same structure.
    "demo": {
        "model": {"d_model": 128, "num_heads": 4, "decoder_layers": 2, "audio_encoder_layers": 1,
                  "lip_encoder_layers": 1, "ff_dim": 256, "window": 5, "dropout": 0.1, "reference_dropout": 0.2,
                  "vertex_loss_weight": 300.0},
        # Random reference lengths (16..128): a model trained at one fixed n opened the mouth over 0.76 of
        # the truth's range at the n users give (issue 15; DECISIONS).
        "clip_frames": 64, "reference_frames": 128, "min_reference_frames": 16, "batch_size": 8, "steps": 2500,
        "lr": 5e-4, "warmup": 100, "checkpoint_every": 500, "log_every": 50,
    },
}


@dataclass
class MotionTrainConfig(PresetConfig):
    PRESETS = MOTION_PRESETS  # class attribute (no annotation): not a field

    model: dict = field(default_factory=lambda: dict(MOTION_PRESETS["full"]["model"]))
    clip_frames: int = 64
    reference_frames: int = 256
    # None: every reference is n = reference_frames long (the paper). A number m: each sample's reference
    # length is drawn log-uniformly from [m, reference_frames] (the rest padded and masked), so the model
    # also serves short style clips (see docs/RESULTS.md, the ablation's n = 16 column).
    min_reference_frames: int | None = None
    batch_size: int = 32
    steps: int = 100_000
    lr: float = 1e-4
    warmup: int = 1000
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    log_every: int = 100
    checkpoint_every: int = 2000
    keep_checkpoints: int = 2
    val_samples: int = 8  # fixed held-out samples whose loss is logged (only with held-out data: ``val_data``)
    seed: int = 0
    mixed_precision: str | None = None  # None/auto: bf16 or fp16 on GPU, fp32 on CPU
    cpu: bool = False



# ----------------------------------------------------------------------------- data


@dataclass
class MotionClip:
    """What stage 1 needs from a clip: features, mouth params (inference-identical), flags, neutral."""

    key: str
    speaker: str
    features: np.ndarray  # (T, D)
    params: np.ndarray  # (T, 13)
    usable: np.ndarray  # (T,)
    silence: np.ndarray  # (T,)
    neutral: np.ndarray  # (478, 3)
    openness: np.ndarray  # (T,)
    wave: np.ndarray
    fps: float
    spec_extra: dict = field(default_factory=dict)


def motion_clips(clips: list[ClipData], mouth: MouthModel) -> list[MotionClip]:
    out = []
    for c in clips:
        a = c.analyse(mouth)
        n = min(len(c), len(c.features))
        out.append(MotionClip(c.key, c.speaker, c.features[:n], a.params[:n].astype(np.float32), c.usable[:n],
                              c.silence[:n], a.neutral, a.openness[:n], c.wave, c.fps, dict(c.spec.extra)))
    return out


class ReferencePool:
    """Per speaker, the usable frames of each clip: where style references are cut from."""

    def __init__(self, clips: list[MotionClip]) -> None:
        self.clips = clips
        self.speakers: dict[str, list[int]] = {}
        for i, c in enumerate(clips):
            self.speakers.setdefault(c.speaker, []).append(i)
        self.frames = [np.flatnonzero(c.usable) for c in clips]

    def random_reference(self, target: int, span: tuple[int, int], n: int, rng: np.random.Generator):
        """(audio (n, D), params (n, 13), padding (n,)): n consecutive usable frames of the speaker at other times."""
        others = [i for i in self.speakers[self.clips[target].speaker] if i != target and len(self.frames[i])]
        parts_a, parts_p, total = [], [], 0
        if others:
            for i in rng.permutation(others):
                idx = self.frames[i]
                parts_a.append(self.clips[i].features[idx])
                parts_p.append(self.clips[i].params[idx])
                total += len(idx)
                if total >= 2 * n:
                    break
        else:  # a speaker with one clip: its frames outside the target window
            c = self.clips[target]
            idx = self.frames[target]
            idx = idx[(idx < span[0]) | (idx >= span[1])]
            parts_a, parts_p, total = [c.features[idx]], [c.params[idx]], len(idx)
        return _window(parts_a, parts_p, total, n, rng)

    def eval_reference(self, target: int, n: int):
        """The reference inference would take: the best voiced n-frame window of the speaker's other clips."""
        from ..style import choose_reference_window

        others = [i for i in self.speakers[self.clips[target].speaker] if i != target]
        if not others:
            raise LipSyncInputError(f"eval: speaker {self.clips[target].speaker} has one clip; a reference needs two.")
        audio = np.concatenate([self.clips[i].features for i in others])
        params = np.concatenate([self.clips[i].params for i in others])
        usable = np.concatenate([self.clips[i].usable for i in others])
        speech = ~np.concatenate([self.clips[i].silence for i in others])
        idx = choose_reference_window(usable, speech, n)
        return audio[idx], params[idx]


def _window(parts_a, parts_p, total: int, n: int, rng: np.random.Generator):
    dims, k = parts_a[0].shape[1], parts_p[0].shape[1]
    audio = np.zeros((n, dims), np.float32)
    params = np.zeros((n, k), np.float32)
    pad = np.ones(n, bool)
    if total == 0:
        return audio, params, pad
    cat_a, cat_p = np.concatenate(parts_a), np.concatenate(parts_p)
    start = int(rng.integers(0, max(total - n, 0) + 1))
    m = min(n, total)
    audio[:m], params[:m], pad[:m] = cat_a[start:start + m], cat_p[start:start + m], False
    return audio, params, pad


class MotionSampler:
    """Draws one training sample from an rng (used by :class:`common.IndexDataset`)."""

    def __init__(self, clips: list[MotionClip], clip_frames: int, reference_frames: int,
                 min_reference_frames: int | None = None, targets: list[int] | None = None) -> None:
        """``targets``: the clips samples are drawn from (default all); the others only give references
        (held-out validation: targets from the held-out tail, references from the training footage)."""
        self.clips, self.length, self.n = clips, int(clip_frames), int(reference_frames)
        self.min_n = int(min_reference_frames) if min_reference_frames else None
        if self.min_n is not None and not 1 <= self.min_n <= self.n:
            raise LipSyncInputError(f"min_reference_frames {self.min_n} must be in 1..reference_frames ({self.n}).")
        self.pool = ReferencePool(clips)
        chosen = set(range(len(clips)) if targets is None else targets)
        weights = np.array([max(int(c.usable.sum()), 0) if i in chosen else 0 for i, c in enumerate(clips)],
                           np.float64)
        if weights.sum() == 0:
            raise LipSyncInputError("data: no clip has usable frames.")
        self.weights = weights / weights.sum()

    def __call__(self, rng: np.random.Generator) -> dict:
        target = int(rng.choice(len(self.clips), p=self.weights))
        c = self.clips[target]
        t = len(c.params)
        length = self.length
        start = int(rng.integers(0, max(t - length, 0) + 1))
        stop = min(start + length, t)
        audio = np.zeros((length, c.features.shape[1]), np.float32)
        params = np.zeros((length, c.params.shape[1]), np.float32)
        valid = np.zeros(length, bool)
        m = stop - start
        audio[:m], params[:m], valid[:m] = c.features[start:stop], c.params[start:stop], c.usable[start:stop]
        if m < length:  # a short clip: repeat its last frame's audio so windows stay in-clip; no loss there
            audio[m:] = c.features[stop - 1]
        n = self.n
        if self.min_n is not None and self.min_n < self.n:
            n = int(np.clip(round(np.exp(rng.uniform(np.log(self.min_n), np.log(self.n)))), self.min_n, self.n))
        ref_audio, ref_params, ref_pad = self.pool.random_reference(target, (start, stop), n, rng)
        if n < self.n:  # one batch shape: pad to n frames, masked out of the attention
            extra = self.n - n
            ref_audio = np.concatenate([ref_audio, np.zeros((extra, ref_audio.shape[1]), np.float32)])
            ref_params = np.concatenate([ref_params, np.zeros((extra, ref_params.shape[1]), np.float32)])
            ref_pad = np.concatenate([ref_pad, np.ones(extra, bool)])
        return {"audio": audio, "params": params, "valid": valid, "ref_audio": ref_audio, "ref_params": ref_params,
                "ref_pad": ref_pad}


class MotionLoss(nn.Module):
    """The training step as a module, so DDP (through accelerate) sees the forward and syncs gradients."""

    def __init__(self, model: LipMotionTransformer, vertex_basis: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("vertex_basis", vertex_basis, persistent=False)

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        model = self.model
        ref_audio = batch["ref_audio"] if model.config.reference_mode == "audio_aware" else None
        pad = batch["ref_pad"]
        if model.uses_reference:
            pred = model.forward_clips(batch["audio"], ref_audio, batch["ref_params"], pad)
        else:
            pred = model.forward_clips(batch["audio"])
        valid = batch["valid"]
        return motion_loss(pred[valid], batch["params"][valid], self.vertex_basis, model.config.vertex_loss_weight)


# ----------------------------------------------------------------------------- training


def build_motion_model(config: MotionTrainConfig, audio_dim: int, spec: dict) -> LipMotionTransformer:
    return LipMotionTransformer(audio_dim=audio_dim, feature_spec=spec, **config.model)


def train_motion(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: MotionTrainConfig,
    basis: str | os.PathLike | None = None,
    resume: str | None = None,
    progress: bool = True,
    init: str | os.PathLike | None = None,
    val_data: str | os.PathLike | None = None,
    hooks: StepHooks | None = None,
) -> dict:
    """Train stage 1; writes ``out_dir/motion.safetensors`` (+ the basis) and returns a summary.

    ``init``: a motion.safetensors to start from (fine-tuning; its architecture wins over ``config.model``).
    ``val_data``: a prepared folder of held-out clips (same speakers): their loss is logged as ``val_loss`` and
    the best weights are exported instead of the last.
    """
    out = Path(out_dir)
    accelerator = seeded_accelerator(config)
    mouth = load_basis(basis or basis_path(data_dir))
    clips = motion_clips(load_dataset(data_dir, min_frames=2), mouth)
    spec = load_dataset_spec(data_dir)
    if init is not None:
        model = load_model(init, "motion").train()
        FeatureSpec.from_dict(spec).check_compatible(FeatureSpec.from_dict(model.config.feature_spec), "footage audio")
    else:
        model = build_motion_model(config, clips[0].features.shape[1], spec)
    sampler = MotionSampler(clips, config.clip_frames, config.reference_frames, config.min_reference_frames)
    # checkpoints, logs, config: apart per stage (several stages may share out)
    run = start_run("motion", accelerator, MotionLoss(model, mouth.components_tensor()), sampler, config,
                    out / "motion_run", data_dir, resume=resume)
    validation = None
    if val_data is not None:
        held_out = motion_clips(load_dataset(val_data, min_frames=2), mouth)
        val_sampler = MotionSampler(clips + held_out, config.clip_frames, config.reference_frames, None,
                                    targets=list(range(len(clips), len(clips) + len(held_out))))
        batch = fixed_batch(val_sampler, config.seed, config.val_samples, accelerator.device)
        validation = HeldOutValidation(out / "motion_run", config.log_every,
                                       lambda: held_out_loss(accelerator.unwrap_model(run.module), batch),
                                       lambda path: save_model(accelerator.unwrap_model(run.module).model, path))
        validation.start(run.start)
    after = None if validation is None else (lambda step: validation(step, config.steps))
    summary = {**fit(run, run.module, after, progress=progress, hooks=hooks), "processes": accelerator.num_processes}
    if validation is not None:
        summary.update(validation.summary())

    def export(module: MotionLoss) -> None:
        if validation is not None:
            module.model.load_state_dict(load_model(validation.best_path, "motion").state_dict())
        save_model(module.model, out / "motion.safetensors", extra=run.weights_metadata(summary))
        shutil.copyfile(Path(basis) if basis and Path(basis).is_file() else basis_path(data_dir),
                        out / "mouth_model.safetensors")

    return finish(run, summary, export)


@torch.no_grad()
def held_out_loss(module: MotionLoss, batch: dict) -> float:
    """The loss on fixed held-out samples, dropout off (deterministic)."""
    was = module.training
    module.eval()
    try:
        return float(module(batch)[0])
    finally:
        module.train(was)


def load_dataset_spec(data_dir: str | os.PathLike) -> dict:
    from .dataset import clip_paths, read_meta

    return read_meta(clip_paths(data_dir)[0])["feature_spec"]
