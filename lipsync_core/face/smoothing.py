"""One-Euro filtering of crop-transform parameters (Casiez et al., CHI 2012).

Low jitter when the head is still (cut-off ``min_cutoff``), little lag when it moves (the
cut-off rises with speed by ``beta``). Offline tracks are filtered forward and backward and
averaged, which cancels the filter's lag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroConfig:
    """min_cutoff (Hz), beta (per unit of speed), d_cutoff (Hz) of the speed estimate."""

    min_cutoff: float = 1.0
    beta: float = 0.3
    d_cutoff: float = 1.0


def _alpha(cutoff: np.ndarray | float, rate: float) -> np.ndarray | float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau * rate)


def one_euro(values: np.ndarray, rate: float, config: OneEuroConfig = OneEuroConfig()) -> np.ndarray:
    """Causal One-Euro filter over axis 0 of (T, D) values sampled at ``rate`` Hz.

    Sequential by nature; the loop runs over T with D-vector maths (4 numbers per frame here).
    """
    x = np.asarray(values, dtype=np.float64)
    out = np.empty_like(x)
    if len(x) == 0:
        return out
    a_d = _alpha(config.d_cutoff, rate)
    prev = x[0].copy()
    dprev = np.zeros_like(prev)
    out[0] = prev
    for t in range(1, len(x)):
        dx = (x[t] - prev) * rate
        dprev = dprev + a_d * (dx - dprev)
        a = _alpha(config.min_cutoff + config.beta * np.abs(dprev), rate)
        prev = prev + a * (x[t] - prev)
        out[t] = prev
    return out


def one_euro_zero_phase(values: np.ndarray, rate: float, config: OneEuroConfig = OneEuroConfig()) -> np.ndarray:
    """Forward and backward One-Euro, averaged: smooth without lag (offline use)."""
    fwd = one_euro(values, rate, config)
    bwd = one_euro(np.asarray(values)[::-1], rate, config)[::-1]
    return 0.5 * (fwd + bwd)
