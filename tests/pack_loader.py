"""The pack as ComfyUI loads it, for every test.

ComfyUI imports a custom node folder as a package named after the folder, so the nodes reach the core as
``<pack>.lipsync_core`` (relative imports). Here the repository is loaded the same way, as the package
``StyleLipSync``, and ``StyleLipSync.lipsync_core.*`` are the very modules the core tests import as
``lipsync_core.*`` (one copy of each class, so errors and contracts compare equal across both names).
The nodes are V3 nodes: they import ComfyUI's public API (``comfy_api``), which comes from the ComfyUI
sources beside the repository (``../shared/hosts/ComfyUI``, or ``$COMFYUI_SOURCE``); nothing else of ComfyUI
is used outside a host (nodes/host.py).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK = "StyleLipSync"
CORE = "lipsync_core"
COMFY_SOURCE = Path(os.environ.get("COMFYUI_SOURCE", ROOT.parent / "shared" / "hosts" / "ComfyUI"))


class _SharedCore(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``StyleLipSync.lipsync_core.X`` is the module ``lipsync_core.X`` itself."""

    prefix = f"{PACK}.{CORE}"

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.prefix or fullname.startswith(self.prefix + "."):
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return importlib.import_module(CORE + spec.name[len(self.prefix):])

    def exec_module(self, module):
        return None


def load_pack() -> None:
    """Import the repository as the package ``StyleLipSync`` (once)."""
    if PACK in sys.modules:
        return
    if not (COMFY_SOURCE / "comfy_api").is_dir():
        raise RuntimeError(f"no ComfyUI sources at {COMFY_SOURCE}: the V3 nodes import comfy_api from there "
                           "(put ../shared beside the repository, or set COMFYUI_SOURCE)")
    if str(COMFY_SOURCE) not in sys.path:
        sys.path.append(str(COMFY_SOURCE))  # last: the repository's own packages win
    sys.meta_path.insert(0, _SharedCore())
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    # pytest sees the repository's __init__.py and imports the folder as a package of its own name (the
    # checkout's folder name) to set it up: that is this same package.
    sys.modules.setdefault(ROOT.name, module)

