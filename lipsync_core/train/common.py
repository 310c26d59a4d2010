"""What every training loop shares: accelerate, index-seeded samples, checkpoints, resume, logs.

Distribution is Hugging Face ``accelerate`` only: ``accelerate launch --num_processes N`` (several GPUs,
several nodes, or several CPU processes) or plain ``python`` for one device. Every sample is drawn from
its own seed ``(seed, sample_index)``, so the data a run sees does not depend on the number of processes
and a resumed run continues with exactly the samples it would have drawn.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..types import LipSyncInputError


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["d_model=64", "block_out_channels=[32,64]"]`` -> dict (values parsed as JSON when they parse)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise LipSyncInputError(f"--set {item!r}: write key=value, e.g. --set d_model=128.")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def apply_overrides(config, overrides: dict[str, Any]):
    """A dataclass config with ``overrides`` applied; keys of ``config.model`` (a dict) are accepted too."""
    names = {f.name for f in fields(config)}
    top = {k: v for k, v in overrides.items() if k in names}
    rest = {k: v for k, v in overrides.items() if k not in names}
    config = replace(config, **top)
    if rest:
        if not hasattr(config, "model"):
            raise LipSyncInputError(f"--set: unknown settings {sorted(rest)}.")
        config = replace(config, model={**config.model, **rest})
    return config


class PresetConfig:
    """``Config.preset(name)``: a training config dataclass from one of its class's ``PRESETS``."""

    PRESETS: ClassVar[dict[str, dict]] = {}

    @classmethod
    def preset(cls, name: str):
        if name not in cls.PRESETS:
            raise LipSyncInputError(f"--preset {name!r}: use one of {sorted(cls.PRESETS)}.")
        p = cls.PRESETS[name]
        return cls(**{**{k: v for k, v in p.items() if k != "model"}, "model": dict(p["model"])})


def config_dict(config) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config), default=list))


class IndexDataset(torch.utils.data.Dataset):
    """Sample ``i`` of a run is ``make(np.random.default_rng((seed, i)))``: reproducible, order-free."""

    def __init__(self, make: Callable[[np.random.Generator], dict], seed: int, start: int, stop: int) -> None:
        self.make, self.seed, self.start, self.stop = make, int(seed), int(start), int(stop)

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __getitem__(self, i: int) -> dict:
        return self.make(np.random.default_rng([self.seed, self.start + int(i)]))


def fixed_batch(sampler: Callable[[np.random.Generator], dict], seed: int, count: int, device) -> dict:
    """``count`` samples drawn from seeds no training step uses (``(seed, 10**9, i)``), stacked on ``device``:
    the fixed samples a validation loss is measured on (same noise, same timesteps every time)."""
    samples = [sampler(np.random.default_rng([seed, 10**9, i])) for i in range(count)]
    return {k: torch.stack([torch.as_tensor(s[k]) for s in samples]).to(device) for k in samples[0]}


def make_accelerator(mixed_precision: str | None, cpu: bool = False):
    """An Accelerator; mixed precision defaults to bf16 (or fp16) on GPU and fp32 on CPU."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

    if mixed_precision in (None, "auto"):
        if torch.cuda.is_available() and not cpu:
            mixed_precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            mixed_precision = "no"
    # Unused parameters are normal here (the null reference token when no sample drops its reference).
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu,
                       dataloader_config=DataLoaderConfiguration(split_batches=False, even_batches=True),
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


def seeded_accelerator(config):
    """A stage's Accelerator, with torch and numpy seeded per process (seed + rank) before any model is built."""
    accelerator = make_accelerator(config.mixed_precision, config.cpu)
    seed_everything(config.seed + accelerator.process_index)
    return accelerator


def lane_threads(jobs: int) -> int:
    """Torch threads for each of ``jobs`` training processes side by side: the cores split between them
    (on a small CPU, OpenMP contention between processes costs more than extra threads give)."""
    return max(1, (os.cpu_count() or 1) // max(jobs, 1))


def make_loader(make: Callable, seed: int, batch_size: int, num_processes: int, start_step: int, steps: int):
    """Batches ``start_step..steps`` of a run: global batch = batch_size * processes, sharded by accelerate."""
    global_batch = batch_size * num_processes
    ds = IndexDataset(make, seed, start_step * global_batch, steps * global_batch)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0, drop_last=True)


def lr_lambda(warmup: int, steps: int, final: float = 0.1) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to ``final`` x the peak learning rate."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        progress = (step - warmup) / max(steps - warmup, 1)
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return f


@dataclass
class RunState:
    """Saved next to each checkpoint: the step reached and the config it was trained with."""

    step: int
    config: dict


def latest_checkpoint(out_dir: Path) -> Path | None:
    folder = out_dir / "checkpoints"
    if not folder.is_dir():
        return None
    steps = sorted((int(p.name.split("_")[-1]), p) for p in folder.glob("step_*") if (p / "run_state.json").is_file())
    return steps[-1][1] if steps else None


def resolve_resume(out_dir: Path, resume: str | None) -> Path | None:
    if not resume:
        return None
    if resume == "latest":
        return latest_checkpoint(out_dir)
    path = Path(resume)
    if not (path / "run_state.json").is_file():
        raise LipSyncInputError(f"--resume {resume}: not a checkpoint folder (no run_state.json); use 'latest'.")
    return path


def save_checkpoint(accelerator, out_dir: Path, step: int, config: dict, keep: int = 2) -> Path:
    """accelerate's full training state (model, optimizer, scheduler, EMA, RNG) + the step reached."""
    path = out_dir / "checkpoints" / f"step_{step:07d}"
    accelerator.save_state(str(path), safe_serialization=True)
    if accelerator.is_main_process:
        (path / "run_state.json").write_text(json.dumps({"step": step, "config": config}, indent=1))
        old = sorted(p for p in (out_dir / "checkpoints").glob("step_*") if p != path)
        for p in old[: max(len(old) - (keep - 1), 0)]:
            shutil.rmtree(p, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def load_checkpoint(accelerator, path: Path) -> int:
    accelerator.load_state(str(path))
    return int(json.loads((path / "run_state.json").read_text())["step"])


class LossLog:
    """Losses as JSON lines (``train_log.jsonl``) + a short line on the console every ``every`` steps."""

    def __init__(self, out_dir: Path, enabled: bool, every: int, total: int, name: str) -> None:
        self.enabled, self.every, self.total, self.name = enabled, max(int(every), 1), total, name
        self.path = out_dir / "train_log.jsonl"
        self.t0 = time.perf_counter()
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        if enabled:
            out_dir.mkdir(parents=True, exist_ok=True)

    def add(self, step: int, values: dict[str, float], lr: float) -> dict | None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1
        if (step + 1) % self.every and step + 1 != self.total:
            return None
        row = {"step": step + 1, **{k: s / self.counts[k] for k, s in self.sums.items()}, "lr": lr,
               "elapsed_s": round(time.perf_counter() - self.t0, 2)}
        self.sums, self.counts = {}, {}
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            main = {k: v for k, v in row.items() if k not in ("step", "elapsed_s")}
            text = " ".join(f"{k}={v:.4g}" for k, v in main.items())
            print(f"[{self.name}] step {row['step']}/{self.total} {text} ({row['elapsed_s']:.0f} s)", flush=True)
        return row


def read_log(out_dir: str | os.PathLike) -> list[dict]:
    path = Path(out_dir) / "train_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


# ----------------------------------------------------------------------------- the shared step loop


@dataclass
class TrainRun:
    """One stage's run as every loop needs it: accelerate objects, the resume point and the log."""

    stage: str
    accelerator: Any
    module: torch.nn.Module
    optimizer: Any
    scheduler: Any
    loader: Any
    folder: Path  # checkpoints, train_log.jsonl, train_config.json, train_summary.json
    config: Any
    log: LossLog
    start: int
    data_dir: str

    @property
    def config_json(self) -> dict[str, Any]:
        return config_dict(self.config)

    def weights_metadata(self, summary: dict, **more) -> dict[str, Any]:
        """What an exported weights file records of its training (``extra`` of ``save_model``)."""
        return {"trained_steps": summary["steps"], "trained_on": str(self.data_dir), **more,
                "train_config": self.config_json}


def start_run(stage: str, accelerator, module: torch.nn.Module, sampler: Callable, config, folder: Path,
              data_dir, params: Iterable | None = None, checkpointed: Iterable = (), resume: str | None = None,
              config_extra: dict | None = None) -> TrainRun:
    """AdamW + warm-up/cosine schedule, ``accelerator.prepare``, resume, the index-seeded loader, the log.

    ``checkpointed`` (e.g. an EMA) is saved and restored with the run's checkpoints.
    """
    optimizer = torch.optim.AdamW(module.parameters() if params is None else params, lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config.warmup, config.steps))
    module, optimizer, scheduler = accelerator.prepare(module, optimizer, scheduler)
    for obj in checkpointed:
        accelerator.register_for_checkpointing(obj)
    start = 0
    ckpt = resolve_resume(folder, resume)
    if ckpt is not None:
        start = load_checkpoint(accelerator, ckpt)
        accelerator.print(f"resumed from {ckpt} at step {start}")
    loader = accelerator.prepare(make_loader(sampler, config.seed, config.batch_size, accelerator.num_processes,
                                             start, config.steps))
    log = LossLog(folder, accelerator.is_main_process, config.log_every, config.steps, stage)
    run = TrainRun(stage, accelerator, module, optimizer, scheduler, loader, folder, config, log, start, str(data_dir))
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"stage": stage, "data": str(data_dir), **(config_extra or {}), **run.config_json}
        (folder / "train_config.json").write_text(json.dumps(meta, indent=1))
    return run


@dataclass
class StepHooks:
    """What a caller outside the loop may do between steps: stop it (a cancel raises in ``before_step``, a
    time budget sets ``deadline``, a ``time.perf_counter()`` value) and follow it (``progress(step, total,
    logged)`` after every step, with the last logged values, e.g. the validation loss)."""

    before_step: Callable[[], None] | None = None
    deadline: float | None = None
    progress: Callable[[int, int, dict], None] | None = None


class HeldOutValidation:
    """A loss on held-out samples every ``every`` steps (and before the first); the weights of the best one are
    kept (``save_best(path)``) in ``folder/best.safetensors`` with ``best.json``, so a resumed run keeps them too.

    ``compute()`` returns the loss of the weights to keep (for the renderer, the EMA's); ``save_best`` writes
    those weights. Exports take the best weights (``best_path``) rather than the last.
    """

    def __init__(self, folder: Path, every: int, compute: Callable[[], float],
                 save_best: Callable[[Path], None]) -> None:
        self.folder, self.every, self.compute, self.save_best = folder, max(int(every), 1), compute, save_best
        self.record = folder / "best.json"
        self.best_path = folder / "best.safetensors"
        state = json.loads(self.record.read_text()) if self.record.is_file() else {}
        self.best, self.best_step = state.get("val_loss", math.inf), state.get("step")
        self.first = state.get("first_val_loss")

    def start(self, step: int) -> float:
        """The loss before the run's first step (the base weights' when fine-tuning), kept if none is better."""
        loss = self.compute()
        if self.first is None:
            self.first = loss
        self.offer(step, loss)
        return loss

    def offer(self, step: int, loss: float) -> None:
        if loss < self.best:
            self.best, self.best_step = loss, step
            self.folder.mkdir(parents=True, exist_ok=True)
            self.save_best(self.best_path)
            self.record.write_text(json.dumps({"val_loss": loss, "step": step, "first_val_loss": self.first}))

    def __call__(self, step: int, total: int) -> dict | None:
        if (step + 1) % self.every and step + 1 != total:
            return None
        loss = self.compute()
        self.offer(step + 1, loss)
        return {"val_loss": loss}

    def summary(self) -> dict:
        return {"val_loss_first": self.first, "val_loss_best": self.best, "best_step": self.best_step}


def fit(run: TrainRun, step_fn: Callable[[dict], tuple[torch.Tensor, dict]],
        after_step: Callable[[int], dict | None] | None = None, progress: bool = True,
        hooks: StepHooks | None = None) -> dict:
    """The loop every stage shares: forward under autocast, backward, clip, step, log, checkpoint.

    ``step_fn(batch) -> (loss, parts)``; ``after_step(step)`` (an EMA update, a validation loss) may return
    more values to log; ``hooks`` stop the loop early (a deadline, a cancel) or report each step. Returns
    ``{"steps", "seconds"}`` (+ ``"stopped": "time"`` when the deadline ended it); the caller exports and then
    calls ``finish``.
    """
    from tqdm import tqdm

    acc, config = run.accelerator, run.config
    hooks = hooks or StepHooks()
    run.module.train()
    t0 = time.perf_counter()
    step = run.start
    stopped = None
    logged: dict = {}
    bar = tqdm(total=config.steps, initial=run.start, desc=f"train-{run.stage}", unit="step",
               disable=not (progress and acc.is_main_process))
    for batch in run.loader:
        if hooks.before_step is not None:
            hooks.before_step()
        if hooks.deadline is not None and time.perf_counter() >= hooks.deadline:
            stopped = "time"
            break
        with acc.autocast():
            loss, parts = step_fn(batch)
        acc.backward(loss)
        if config.grad_clip:
            acc.clip_grad_norm_(run.module.parameters(), config.grad_clip)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        values = {k: acc.reduce(v.detach().float().reshape(1), "mean").item()
                  for k, v in {"loss": loss, **parts}.items()}
        if after_step is not None:
            values.update(after_step(step) or {})
        row = run.log.add(step, values, run.scheduler.get_last_lr()[0])
        step += 1
        bar.update(1)
        if row is not None:
            logged = row
            if "val_loss" in row:
                bar.set_postfix(val_loss=f"{row['val_loss']:.4g}")
        if hooks.progress is not None:
            hooks.progress(step, config.steps, logged)
        if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.steps:
            save_checkpoint(acc, run.folder, step, run.config_json, config.keep_checkpoints)
    bar.close()
    acc.wait_for_everyone()
    seconds = round(time.perf_counter() - t0, 1)
    if acc.is_main_process:
        save_checkpoint(acc, run.folder, step, run.config_json, config.keep_checkpoints)
    return {"steps": step, "seconds": seconds, **({"stopped": stopped} if stopped else {})}


def finish(run: TrainRun, summary: dict, export: Callable[[torch.nn.Module], None]) -> dict:
    """On the main process: ``export(unwrapped module)`` and ``train_summary.json``; then every process waits."""
    acc = run.accelerator
    if acc.is_main_process:
        export(acc.unwrap_model(run.module))
        (run.folder / "train_summary.json").write_text(json.dumps(summary, indent=1))
    acc.wait_for_everyone()
    return summary
