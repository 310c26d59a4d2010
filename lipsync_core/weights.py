"""Safetensors files with their config in the metadata (DESIGN.md section 4).

Every file the pack writes is one ``.safetensors`` whose string metadata holds:

- ``stylelipsync.kind``: what the file is ("motion", "renderer", "vae", "mouth_model", ...);
- ``stylelipsync.format_version``: the layout version of that kind;
- ``stylelipsync.config``: JSON of the constructor config (architecture, feature spec,
  crop spec, latent spec, ...);
- ``stylelipsync.extra``: JSON of anything else worth keeping (training recipe, metrics).

Nothing is pickled. Reading checks the kind, the version and that the file is whole,
and every failure is a one-line :class:`WeightsFileError` naming the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError, safe_open

from .types import MODEL_FILES, LipSyncInputError

if TYPE_CHECKING:  # torch is imported where tensors are read or written: headers are checked without it
    import torch

KIND_KEY = "stylelipsync.kind"
VERSION_KEY = "stylelipsync.format_version"
CONFIG_KEY = "stylelipsync.config"
EXTRA_KEY = "stylelipsync.extra"

# What each kind is and which training command makes it: the fix when a file of one kind stands where
# another belongs (python -m lipsync_core.train <command>).
KIND_DESCRIPTIONS = {
    "motion": ("the stage-1 lip-motion model", "train-motion"),
    "renderer": ("the stage-2 face renderer", "train-renderer"),
    "mouth_model": ("the mouth model", "fit-basis"),
    "vae": ("the renderer's VAE", "train-vae"),
}


def _put_here(kind: str, where: str = "here") -> str:
    """'put the stage-1 lip-motion model here (motion.safetensors, from `python -m lipsync_core.train ...`)'."""
    if kind not in KIND_DESCRIPTIONS:
        return f"put a '{kind}' file {where}"
    what, command = KIND_DESCRIPTIONS[kind]
    return f"put {what} {where} ({MODEL_FILES[kind]}, from `python -m lipsync_core.train {command}`)"


class WeightsFileError(LipSyncInputError):
    """A weights file that is missing, broken, or not the kind that was asked for."""


@dataclass
class WeightsFile:
    """The parsed contents of one weights file."""

    path: Path
    kind: str
    format_version: int
    config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def save_tensors(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    kind: str,
    config: dict[str, Any],
    format_version: int = 1,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``tensors`` with kind, version and config as JSON metadata (atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        KIND_KEY: kind,
        VERSION_KEY: str(int(format_version)),
        CONFIG_KEY: json.dumps(config, sort_keys=True),
        EXTRA_KEY: json.dumps(extra or {}, sort_keys=True),
    }
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    tmp = path.with_name(path.name + ".partial")
    save_file(contiguous, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def read_header(path: str | os.PathLike) -> dict[str, str]:
    """The raw string metadata of a safetensors file, with clear errors for broken files."""
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"{path}: no such weights file; check the path or the models folder.")
    if path.suffix != ".safetensors":
        raise WeightsFileError(f"{path}: only .safetensors weights are read (nothing is unpickled).")
    try:
        with safe_open(str(path), framework="numpy") as f:  # the header only: no torch needed
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsFileError(
            f"{path}: not a readable safetensors file ({_short(exc)}); re-export or re-copy it."
        ) from exc


def check_kind(path: str | os.PathLike, expected_kind: str | None = None) -> dict[str, str]:
    """The header of a StyleLipSync weights file, checked to hold ``expected_kind`` (headers only: fast)."""
    path = Path(path)
    meta = read_header(path)
    kind = meta.get(KIND_KEY)
    if kind is None:
        raise WeightsFileError(
            f"{path}: not a StyleLipSync weights file (no '{KIND_KEY}' in its metadata); use a file this pack's "
            "training exported."
        )
    if expected_kind is not None and kind != expected_kind:
        this = (f"{KIND_DESCRIPTIONS[kind][0]}, which belongs in {MODEL_FILES[kind]}" if kind in KIND_DESCRIPTIONS
                else f"a '{kind}' file")  # fmt: skip
        raise WeightsFileError(
            f"{path}: holds a '{kind}' model, but a '{expected_kind}' model is expected here; "
            f"{_put_here(expected_kind)}; this file is {this}."
        )
    return meta


def check_model_folder(folder: str | os.PathLike, what: str = "models") -> dict[str, Path]:
    """The model files of a folder (kind -> path), each checked to hold its kind; the VAE may be absent."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsFileError(
            f"{what}: {folder} is not a folder; point it at the folder of .safetensors models "
            f"({', '.join(MODEL_FILES.values())})."
        )
    paths: dict[str, Path] = {}
    for kind, name in MODEL_FILES.items():
        path = folder / name
        if not path.is_file():
            if kind == "vae":
                continue
            raise WeightsFileError(f"{what}: {folder} has no {name}; {_put_here(kind, 'there')}.")
        check_kind(path, kind)
        paths[kind] = path
    return paths


def load_tensors(
    path: str | os.PathLike,
    expected_kind: str | None = None,
    max_version: int = 1,
    device: str | torch.device = "cpu",
) -> WeightsFile:
    """Read a weights file written by :func:`save_tensors`, checking kind, version and integrity."""
    path = Path(path)
    meta = check_kind(path, expected_kind)
    kind = meta[KIND_KEY]
    try:
        version = int(meta.get(VERSION_KEY, "0"))
        config = json.loads(meta.get(CONFIG_KEY, "{}"))
        extra = json.loads(meta.get(EXTRA_KEY, "{}"))
    except ValueError as exc:
        raise WeightsFileError(f"{path}: its metadata is corrupted ({_short(exc)}); re-export or re-copy it.") from exc
    if not 1 <= version <= max_version:
        raise WeightsFileError(
            f"{path}: format version {version} of '{kind}' is not supported (this pack reads 1..{max_version}); "
            "update the pack or re-export the file."
        )
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            for name in f.keys():
                tensors[name] = f.get_tensor(name)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsFileError(f"{path}: the file is truncated or corrupted ({_short(exc)}); re-copy it.") from exc
    return WeightsFile(path=path, kind=kind, format_version=version, config=config, extra=extra, tensors=tensors)


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
