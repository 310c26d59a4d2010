"""The core library, imported the same way whether the pack is a package or a source folder.

Inside ComfyUI the pack is loaded as a package (named after its folder), so the core is the sibling
subpackage ``<pack>.lipsync_core``; in pytest, scripts and the CLI the repository root is on
sys.path and the core is the top-level ``lipsync_core``. Nothing is added to sys.path either way.
(This is why lipsync_core must import itself relatively: tests/test_nodes_contract.py checks it.)
"""

from __future__ import annotations

import importlib
from types import ModuleType

_PACK = (__package__ or "").rpartition(".")[0]
CORE_PACKAGE = f"{_PACK}.lipsync_core" if _PACK else "lipsync_core"


def core_module(name: str) -> ModuleType:
    """``lipsync_core.<name>`` of this pack (e.g. "weights", "models.attention")."""
    return importlib.import_module(f"{CORE_PACKAGE}.{name}")


def optional_core_module(name: str) -> ModuleType | None:
    """Like :func:`core_module`, but None when that part of the core is absent (not yet built, or optional)."""
    try:
        return core_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == f"{CORE_PACKAGE}.{name}" or f"{CORE_PACKAGE}.{name}".startswith(exc.name + ".")):
            return None
        raise


weights = core_module("weights")
LipSyncInputError = core_module("types").LipSyncInputError
