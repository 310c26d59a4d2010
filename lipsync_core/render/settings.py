"""Stage-2 settings, importable without torch or diffusers.

The command line checks its arguments against these before it loads any model, so a bad
argument fails in well under a second instead of after the imports and the tracking.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from ..types import PRECISIONS, SAMPLER_NAMES, LipSyncInputError

MAX_GUIDANCE = 10.0


@dataclass
class RenderSettings:
    """Stage-2 settings. Sampler and steps are the measured defaults: with the shipped renderer, DDIM at 4 steps
    gives the lowest LipLMD and highest PSNR measured on held-out clips (2 steps is already within 5% of 200,
    1 step is not: 4 keeps a margin from that edge; benchmarks/bench_steps_quality.py, docs/PERFORMANCE.md).

    Invalid values are refused when the settings are made (one-line :class:`LipSyncInputError`).
    """

    sampler: str = "ddim"
    steps: int = 4
    seed: int = 0
    chunk_size: int = 16  # frames decoded, rendered and encoded per step of the stream (memory)
    render_batch: int = 8  # frames per network batch, in blocks aligned to the output index
    precision: str = "fp32"
    color_match: float = 0.5
    reference_images: int = 3
    feather: float | None = None  # IOD units: the paste mask's soft edge; None: face.align.MASK_FEATHER
    # Classifier-free guidance on the motion (renderers trained with motion dropout; others ignore it):
    # > 1 makes the mouth follow the motion rather than the reference faces' mouths.
    guidance: float = 3.0
    guided_steps: float = 0.5  # share of the denoising steps that are guided, the noisiest first

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLER_NAMES:
            raise LipSyncInputError(f"sampler: '{self.sampler}' is unknown; choose one of {', '.join(SAMPLER_NAMES)}.")
        if self.precision not in PRECISIONS:
            raise LipSyncInputError(f"precision: '{self.precision}' is unknown; choose one of {', '.join(PRECISIONS)}.")
        for name, low in (("steps", 1), ("chunk_size", 1), ("render_batch", 1), ("reference_images", 1),
                          ("seed", 0)):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                default = getattr(RenderSettings, name)
                raise LipSyncInputError(f"{name}: got {value!r}; use a whole number of at least {low} "
                                        f"(default {default}).")  # fmt: skip
        for name in ("color_match", "feather", "guided_steps"):
            value = getattr(self, name)
            if name == "feather" and value is None:
                continue
            if not isinstance(value, numbers.Real) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise LipSyncInputError(f"{name}: got {value!r}; use a number from 0 to 1 "
                                        f"(default {getattr(RenderSettings, name)}).")  # fmt: skip

        value = self.guidance
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0.0 <= value <= MAX_GUIDANCE:
            raise LipSyncInputError(f"guidance: got {value!r}; use a number from 0 to {MAX_GUIDANCE:g} "
                                    f"(default {RenderSettings.guidance}; 1 = no guidance).")  # fmt: skip

    def io_chunk(self) -> int:
        """``chunk_size`` rounded up to whole render blocks, so chunking never changes a frame."""
        return -(-max(int(self.chunk_size), 1) // self.render_batch) * self.render_batch
