"""Fixtures for tests against a real ComfyUI host (docs/COMFYUI.md tells how to start one).

Environment:
- ``COMFYUI_URL``: the running host (e.g. http://127.0.0.1:8199); without it every test here is skipped.
- ``COMFYUI_PATH``: its ComfyUI checkout (for the models folder and in-process checks of comfy's own code).
- ``COMFYUI_PYTHON``: the host's Python (its venv), for checks that import comfy.
- ``COMFYUI_LOG``: the host's log file (default /tmp/comfyui-host/server.log).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/ (workflow_check)
sys.path.insert(0, str(HERE))  # comfy_client

from comfy_client import ComfyClient, ComfyError  # noqa: E402

DEFAULT_LOG = "/tmp/comfyui-host/server.log"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(HERE) in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def comfy_host() -> ComfyClient:
    url = os.environ.get("COMFYUI_URL")
    if not url:
        pytest.skip("COMFYUI_URL is not set: no ComfyUI host to test against (see docs/COMFYUI.md)")
    client = ComfyClient(url)
    try:
        client.request("GET", "/system_stats")
    except (ComfyError, OSError) as exc:
        pytest.fail(f"COMFYUI_URL={url} is set but the host does not answer: {exc}")
    return client


@pytest.fixture(scope="session")
def comfy_log() -> Path:
    return Path(os.environ.get("COMFYUI_LOG", DEFAULT_LOG))


@pytest.fixture(scope="session")
def comfy_path(comfy_host) -> Path:
    path = os.environ.get("COMFYUI_PATH")
    if not path or not (Path(path) / "folder_paths.py").is_file():
        pytest.skip("COMFYUI_PATH is not set to the host's ComfyUI checkout")
    return Path(path)


@pytest.fixture(scope="session")
def comfy_python(comfy_path) -> str:
    python = os.environ.get("COMFYUI_PYTHON")
    if not python or not Path(python).is_file():
        pytest.skip("COMFYUI_PYTHON is not set to the host's Python")
    return python


@pytest.fixture
def host_models_dir(comfy_path):
    """``<ComfyUI>/models/stylelipsync`` for the duration of a test; files the test adds are removed after.

    The folder itself stays: ComfyUI caches folder listings and a folder removed under it breaks them.
    """
    folder = comfy_path / "models" / "stylelipsync"
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.iterdir())
    yield folder
    for path in set(folder.iterdir()) - before:
        path.unlink()


@pytest.fixture
def lipsync_assets(comfy_path):
    """What the example workflows of 0.1 (tests/fixtures/workflows_0.1) load: the demo clips in ComfyUI/input
    under the names they use, for the one test that needs them (today's examples take them from the Demo Media
    node). Their models are the pack's shipped demo weights. Only files this fixture added are removed after."""
    import shutil

    from build_workflow import INPUT_FILES

    root = HERE.parents[1]
    if not all((root / "lipsync_core" / "assets" / "demo_models" / f"{k}.safetensors").is_file()
               for k in ("motion", "renderer", "mouth_model", "vae")):  # fmt: skip
        pytest.skip("the demo weights (lipsync_core/assets/demo_models) are not in this checkout")
    added: list[Path] = []
    for name, source in INPUT_FILES.items():
        dest = comfy_path / "input" / name
        if not dest.exists():
            added.append(dest)
        # a copy left from an older checkout is replaced: the demo clips are regenerated now and then
        if not dest.exists() or dest.read_bytes() != (root / source).read_bytes():
            shutil.copy(root / source, dest)
    yield {"input": comfy_path / "input"}
    for path in added:
        path.unlink(missing_ok=True)


TINY_PREFIX = "e2e-tiny-"


@pytest.fixture
def tiny_models_in_folder(host_models_dir):
    """Tiny random models (tests/tiny_models.py) as models-folder files ``e2e-tiny-<kind>.safetensors``, for the
    test that picks models from models/stylelipsync instead of the shipped demo weights; removed afterwards."""
    import tempfile

    sys.path.insert(0, str(HERE.parents[1]))
    from tests.tiny_models import save_models, tiny_models

    names = {}
    with tempfile.TemporaryDirectory() as tmp:
        save_models(tiny_models(), Path(tmp))
        for source in sorted(Path(tmp).glob("*.safetensors")):
            dest = host_models_dir / f"{TINY_PREFIX}{source.name}"
            dest.write_bytes(source.read_bytes())
            names[source.stem] = dest.name
    return names


@pytest.fixture(scope="session")
def example_runs(comfy_host):
    """``run(path) -> history entry`` of an example workflow as shipped, run once per session: the tests that check
    that it runs and what it wrote share the run (each lip-sync example takes seconds to a minute on a busy CPU).
    Nothing is copied anywhere first: the examples take their clips from the Demo Media node."""
    import json

    from comfy_client import ui_to_api

    entries: dict[Path, dict] = {}

    def run(path: Path) -> dict:
        if path not in entries:
            workflow = json.loads(path.read_text(encoding="utf-8"))
            entries[path] = comfy_host.run(ui_to_api(workflow, comfy_host.object_info(refresh=True)), timeout=600)
        return entries[path]

    return run
