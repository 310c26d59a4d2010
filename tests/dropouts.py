"""Tracker dropouts on demand: the face is in the picture, but the detector "misses" it in chosen frames.

Real detectors miss a face now and then (motion blur, a quick turn); that is the one case the
tracker may fill in. Tests cannot make the face mesh miss on cue, so this wraps the backends.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from lipsync_core.face.backends import MediaPipeBackend, TorchMeshBackend


def miss_faces(monkeypatch: pytest.MonkeyPatch, frames: Iterable[int]) -> None:
    """Every tracker backend made from now on finds no face in the given frame indices (its own count)."""
    missed = frozenset(int(i) for i in frames)
    process = MediaPipeBackend.process
    process_batch = TorchMeshBackend.process_batch

    def patched(self: MediaPipeBackend, frame):
        faces = process(self, frame)
        if not self._fallback:  # the small-face fallback's own static mesh: leave it alone
            return faces
        index = getattr(self, "_test_frame_index", 0)
        self._test_frame_index = index + 1
        return [] if index in missed else faces

    def patched_batch(self: TorchMeshBackend, frames):
        found = process_batch(self, frames)
        start = getattr(self, "_test_frame_index", 0)
        self._test_frame_index = start + len(found)
        return [[] if start + i in missed else faces for i, faces in enumerate(found)]

    monkeypatch.setattr(MediaPipeBackend, "process", patched)
    monkeypatch.setattr(TorchMeshBackend, "process_batch", patched_batch)
