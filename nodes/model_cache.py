"""One cache of loaded models shared by every node of the pack.

A file is loaded once per (what was built, path, mtime, size): running a graph twice reuses the
models, and replacing a file on disk reloads it (the stale entry is dropped). ``loads`` counts real
loads so tests can assert that a second run did not reload anything.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ._core import LipSyncInputError

T = TypeVar("T")
FileKey = tuple[str, int, int]


def file_key(path: str | os.PathLike) -> FileKey:
    """(resolved path, mtime in ns, size in bytes): what identifies one version of a file."""
    resolved = Path(path).resolve()
    try:
        st = resolved.stat()
    except OSError as exc:
        raise LipSyncInputError(f"model: cannot read '{path}' ({exc.strerror}); check the file.") from exc
    return (str(resolved), st.st_mtime_ns, st.st_size)


class ModelCache:
    """Thread-safe map (kind, path, mtime, size) -> loaded object, with load counters."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, FileKey], Any] = {}
        self._lock = threading.RLock()
        self._loads: Counter[tuple[str, str]] = Counter()

    def get(self, path: str | os.PathLike, loader: Callable[[Path], T], kind: str = "model") -> T:
        """The object ``loader(path)`` built for this version of the file, building it on first use."""
        key = file_key(path)
        with self._lock:
            entry_key = (kind, key)
            if entry_key in self._entries:
                return self._entries[entry_key]
            for stale in [k for k in self._entries if k[0] == kind and k[1][0] == key[0]]:
                del self._entries[stale]
            value = loader(Path(key[0]))
            self._entries[entry_key] = value
            self._loads[(kind, key[0])] += 1
            return value

    def loads(self, path: str | os.PathLike | None = None, kind: str | None = None) -> int:
        """How many times files were really loaded (optionally for one path and/or kind)."""
        resolved = str(Path(path).resolve()) if path is not None else None
        with self._lock:
            return sum(
                n
                for (k, p), n in self._loads.items()
                if (kind is None or k == kind) and (resolved is None or p == resolved)
            )

    def cached(self) -> list[tuple[str, str]]:
        """(kind, path) of every entry held now."""
        with self._lock:
            return [(kind, key[0]) for kind, key in self._entries]

    def evict(self, path: str | os.PathLike | None = None) -> int:
        """Drop entries (all, or those of one path); returns how many were dropped."""
        resolved = str(Path(path).resolve()) if path is not None else None
        with self._lock:
            doomed = [k for k in self._entries if resolved is None or k[1][0] == resolved]
            for k in doomed:
                del self._entries[k]
            return len(doomed)

    def stats(self) -> dict[str, Any]:
        """Entries and load counts, for logs and tests."""
        with self._lock:
            return {
                "entries": len(self._entries),
                "loads": {f"{kind}:{path}": n for (kind, path), n in sorted(self._loads.items())},
            }

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


MODEL_CACHE = ModelCache()
"""The pack-wide cache: every node loads models through this one instance."""
