"""Save and load the pack's models as one ``.safetensors`` per model (config JSON in the metadata).

Built on :mod:`lipsync_core.weights`. Loading checks the kind, the format version, that the
config builds the model, and that every tensor is present with the shape that config implies;
every failure is a one-line :class:`WeightsFileError` naming the file. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from torch import nn

from ..face.template import LEGACY_FRAMING
from ..weights import WeightsFileError, load_tensors, save_tensors
from .motion import LipMotionTransformer
from .renderer import LipRenderUNet

CHECKSUM_KEY = "tensors_sha256"

# kind -> (class, format version written / highest read)
MODEL_KINDS: dict[str, tuple[type[nn.Module], int]] = {
    "motion": (LipMotionTransformer, 1),
    "renderer": (LipRenderUNet, 1),
    "vae": (AutoencoderKL, 1),
}


def kind_of(model: nn.Module) -> str:
    for kind, (cls, _) in MODEL_KINDS.items():
        if type(model) is cls:
            return kind
    raise TypeError(f"{type(model).__name__} is not a registered model kind ({sorted(MODEL_KINDS)}).")


def model_config(model: nn.Module) -> dict[str, Any]:
    """The constructor config of a diffusers-style model, JSON-ready (private '_' keys dropped)."""
    config = dict(model.config)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items() if not k.startswith("_")}


def save_model(model: nn.Module, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (weights + config + kind + version) to one .safetensors file."""
    kind = kind_of(model)
    version = MODEL_KINDS[kind][1]
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    extra = dict(extra or {})
    extra[CHECKSUM_KEY] = tensors_digest(tensors)
    return save_tensors(path, tensors, kind=kind, config=model_config(model), format_version=version, extra=extra)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes: safetensors has no checksum of its own, so flipped
    bytes inside tensor data would otherwise load silently."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_model(
    path: str | os.PathLike,
    expected_kind: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Read a file written by :func:`save_model`; returns the model in eval mode on ``device``."""
    path = Path(path)
    if expected_kind is not None and expected_kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {expected_kind!r}; known: {sorted(MODEL_KINDS)}")
    max_version = MODEL_KINDS[expected_kind][1] if expected_kind else max(v for _, v in MODEL_KINDS.values())
    wf = load_tensors(path, expected_kind=expected_kind, max_version=max_version)
    if wf.kind not in MODEL_KINDS:
        raise WeightsFileError(
            f"{path}: holds a '{wf.kind}' file, which is not a model ({sorted(MODEL_KINDS)}); give a model file."
        )
    cls, version = MODEL_KINDS[wf.kind]
    if wf.format_version > version:
        raise WeightsFileError(
            f"{path}: format version {wf.format_version} of '{wf.kind}' is newer than this pack's; update the pack."
        )
    config = dict(wf.config)
    if wf.kind == "renderer":  # renderers saved before the framing was recorded were trained on the first one
        config.setdefault("crop_framing", list(LEGACY_FRAMING))
    try:
        model = cls.from_config(config)
    except Exception as exc:  # noqa: BLE001 - any failure to build means a bad config
        raise WeightsFileError(
            f"{path}: its '{wf.kind}' config does not build a model ({_short(exc)}); re-export it with this pack."
        ) from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(wf.tensors))
    unexpected = sorted(set(wf.tensors) - set(expected))
    if missing:
        raise WeightsFileError(
            f"{path}: tensor '{missing[0]}' is missing ({len(missing)} missing in all); the file is incomplete or "
            "from another version: re-export or re-copy it."
        )
    if unexpected:
        raise WeightsFileError(
            f"{path}: unexpected tensor '{unexpected[0]}' for its config ({len(unexpected)} in all); re-export it "
            "with this pack."
        )
    for name, ref in expected.items():
        got = wf.tensors[name]
        if tuple(got.shape) != tuple(ref.shape):
            raise WeightsFileError(
                f"{path}: tensor '{name}' has shape {tuple(got.shape)} but its config needs {tuple(ref.shape)}; "
                "re-export it with this pack."
            )
    stored = wf.extra.get(CHECKSUM_KEY)
    if stored is not None and stored != tensors_digest(wf.tensors):
        raise WeightsFileError(f"{path}: tensor data does not match its checksum; the file is corrupted, re-copy it.")
    model.load_state_dict(wf.tensors, strict=True)
    model.eval()
    # nn.Module.to: diffusers' ModelMixin.to warns about fp32 modules on every dtype cast, even with none listed.
    return nn.Module.to(model, device=device, dtype=dtype) if dtype is not None else nn.Module.to(model, device=device)


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
