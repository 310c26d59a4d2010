"""Best-of-N timing for the benchmark scripts (imported as ``timing``: a script's own folder is on its path).

The least of several timed calls is the figure that other work on a shared machine disturbs least.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def best_of(
    fn: Callable[[], T], repeats: int = 1, warmup: int = 0, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, T | None]:
    """The least ``clock`` seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls, and the last
    call's result. ``clock``: ``time.perf_counter`` (wall) or ``time.thread_time`` (this thread's CPU time,
    which holds on a machine other jobs share)."""
    for _ in range(warmup):
        fn()
    best, result = float("inf"), None
    for _ in range(repeats):
        start = clock()
        result = fn()
        best = min(best, clock() - start)
    return best, result
