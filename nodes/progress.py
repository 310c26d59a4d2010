"""Progress bars and interruption for long nodes (ComfyUI's when present, silent no-ops otherwise)."""

from __future__ import annotations

from collections.abc import Callable

from .comfy_host import comfy_module


def check_interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException if the user pressed Cancel (no-op outside ComfyUI).

    Call it between chunks: a cancelled render stops within one chunk and leaves nothing half-written.
    """
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


class Progress:
    """A ``comfy.utils.ProgressBar`` over ``total`` steps that checks for interruption at every step."""

    def __init__(self, total: int, node_id: str | None = None) -> None:
        self.total = max(int(total), 1)
        self.current = 0
        utils = comfy_module("comfy.utils")
        self._bar = None
        if utils is not None:
            try:
                self._bar = utils.ProgressBar(self.total, node_id=node_id)
            except TypeError:  # ComfyUI releases whose ProgressBar takes no node_id
                self._bar = utils.ProgressBar(self.total)

    def update(self, steps: int = 1) -> None:
        """Advance by ``steps``, then honour a pending interruption."""
        self.set(self.current + steps)

    def set(self, value: int, total: int | None = None) -> None:
        """Jump to ``value`` (of ``total`` if it changed), then honour a pending interruption."""
        if total is not None:
            self.total = max(int(total), 1)
        self.current = min(int(value), self.total)
        if self._bar is not None:
            self._bar.update_absolute(self.current, self.total)
        check_interrupted()

    def callback(self) -> Callable[[int, int], None]:
        """``fn(done, total)`` for the core pipeline's per-chunk hook."""

        def on_chunk(done: int, total: int) -> None:
            self.set(done, total)

        return on_chunk
