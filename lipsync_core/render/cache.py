"""The seed-independent work of a render, kept for the next render of the same job.

A render's work before the noise is drawn does not depend on the seed, the sampler, the step count or the
guidance: the appearance references (their latents and features, the reference nearest each frame's
opening), and per block of frames the face crops' latents (masked and clean) and the mouth maps. A caller
that renders the same job again with another seed (the ComfyUI all-in-one node) hands the same
:class:`RenderCache` to :func:`stages.render`: the second render then only denoises, decodes and pastes back.
The result is bit-identical to a render without the cache (the same functions on the same blocks: blocks
are aligned to absolute output indices, so the chunk size never changes them).

Memory is bounded: a cache holds at most ``max_bytes`` of block inputs (:data:`RENDER_CACHE_MB` by default),
kept from the first block on; the blocks past the bound (a long video) are computed afresh on every render,
as without a cache. Latents are held on the CPU, so the accelerator's memory is never taken by the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

RENDER_CACHE_MB = 128
"""Default bound of one cache's block inputs, in MiB (about 45 KB a frame for 256-px crops with 32x32x4
latents: some 2,900 frames, two minutes at 25 fps; the demo renderer's frames take less)."""


@dataclass(frozen=True)
class BlockInputs:
    """What one render block's denoising is conditioned on, before any noise, for the block's usable frames:
    the crops' latents [n, C, h, w] (masked: the context the renderer reads; clean: the upper half that is
    decoded) and the mouth maps [n, c, h, w] (None for renderers without them)."""

    out_indices: np.ndarray  # (n,) the output frames these rows are
    context: torch.Tensor
    clean: torch.Tensor
    mouth_map: torch.Tensor | None

    @property
    def nbytes(self) -> int:
        tensors = [t for t in (self.context, self.clean, self.mouth_map) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors) + self.out_indices.nbytes

    def on(self, device: torch.device | str) -> BlockInputs:
        """The same inputs on ``device`` (a copy is exact)."""
        move = (lambda t: None if t is None else t.to(device))  # noqa: E731
        return BlockInputs(self.out_indices, move(self.context), move(self.clean), move(self.mouth_map))


@dataclass(frozen=True)
class ReferenceInputs:
    """The appearance references of a render: their latents [k, C, h, w], the renderer's features of them
    and, for renderers with the copy path, the reference nearest each output frame's opening (T_out,)."""

    latents: torch.Tensor
    features: Any  # models.renderer.ReferenceFeatures
    aligned: np.ndarray | None


def _identity(value: Any) -> tuple:
    """What identifies an input of the seed-independent work: the object itself (held by the cache, so its id
    cannot be reused while the cache lives); arrays by their contents."""
    if isinstance(value, np.ndarray):
        return ("array", value.shape, str(value.dtype), value.tobytes())
    if isinstance(value, tuple):
        return ("tuple", *(_identity(v) for v in value))
    if value is None or isinstance(value, str | int | float | bool):
        return ("value", value)
    return ("object", id(value))


class RenderCache:
    """The seed-independent work of one job's renders (see the module's docstring), bound to what decides it.

    :func:`stages.render` calls :meth:`bind` with the job's inputs (renderer, mouth model, codec, device,
    analysis, motion, frames, output frame indices, precision, reference count, render batch); when any differs
    from the last render's, the cache empties itself, so a stale entry is never used. Objects count by identity
    (held while bound): a model changed in place is not noticed (the pack loads a replaced file as new objects).
    ``hits`` / ``misses`` / ``over_budget`` count blocks (a test or a user sees what was reused).
    """

    def __init__(self, max_bytes: int = RENDER_CACHE_MB * 2**20) -> None:
        self.max_bytes = int(max_bytes)
        self._key: tuple | None = None
        self._held: tuple = ()
        self.reference: ReferenceInputs | None = None
        self._blocks: dict[int, BlockInputs] = {}
        self.bytes = 0
        self.hits = self.misses = self.over_budget = 0

    def bind(self, **inputs: Any) -> None:
        """Use the cache for a render of these inputs: emptied first when they are not the last render's."""
        key = tuple((name, _identity(value)) for name, value in sorted(inputs.items()))
        if key != self._key:
            self.clear()
            self._key = key
            self._held = tuple(inputs.values())

    def clear(self) -> None:
        self._key, self._held, self.reference = None, (), None
        self._blocks.clear()
        self.bytes = 0

    def block(self, index: int, out_indices: np.ndarray) -> BlockInputs | None:
        """The kept inputs of block ``index`` when they are for these output frames, else None."""
        found = self._blocks.get(index)
        if found is not None and np.array_equal(found.out_indices, out_indices):
            self.hits += 1
            return found
        self.misses += 1
        return None

    def keep(self, index: int, inputs: BlockInputs) -> None:
        """Keep a block's inputs (on the CPU) while the bound allows; past it the block is not kept."""
        size = inputs.nbytes
        if self.bytes + size > self.max_bytes:
            self.over_budget += 1
            return
        self._blocks[index] = inputs.on("cpu")
        self.bytes += size

    def stats(self) -> dict[str, int]:
        return {"blocks": len(self._blocks), "bytes": self.bytes, "max_bytes": self.max_bytes, "hits": self.hits,
                "misses": self.misses, "over_budget": self.over_budget}
