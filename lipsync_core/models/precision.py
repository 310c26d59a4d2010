"""Precision choices: fp32 by default; bf16 / fp16 autocast on CUDA; bf16 autocast on CPU."""

from __future__ import annotations

import contextlib

import torch

from ..types import PRECISIONS, LipSyncInputError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(device: torch.device | str, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """A context manager running the models at ``precision`` on ``device`` (weights stay fp32).

    Numerically sensitive parts stay fp32 inside the models: attention weights (softmax) and the
    modulated-conv demodulation factors are computed in float32.
    """
    if precision not in PRECISIONS:
        raise LipSyncInputError(f"precision={precision!r}: use one of {PRECISIONS}.")
    if precision == "fp32":
        return contextlib.nullcontext()
    device = torch.device(device)
    dtype = _DTYPES[precision]
    if device.type == "cpu" and dtype == torch.float16:
        raise LipSyncInputError("precision='fp16' is not supported on CPU; use 'bf16' or 'fp32'.")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise LipSyncInputError("this GPU does not support bf16; use precision='fp16' or 'fp32'.")
    if device.type not in ("cpu", "cuda"):
        raise LipSyncInputError(f"precision={precision!r} autocast is only wired for cpu and cuda, not {device.type}.")
    return torch.autocast(device_type=device.type, dtype=dtype)
