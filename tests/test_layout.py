"""Project-wide rules: import direction, README and CI agreeing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_never_imports_comfy_or_nodes():
    offenders = []
    for path in sorted((ROOT / "lipsync_core").rglob("*.py")):
        for name in _imported_modules(path):
            top = name.split(".")[0]
            if top in {"comfy", "comfy_extras", "folder_paths", "server", "nodes", "comfy_api"}:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_requirements_leave_out_torch():
    for req in ROOT.glob("requirements*.txt"):
        for line in req.read_text().splitlines():
            pkg = re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower()
            assert pkg not in {"torch", "torchvision", "torchaudio"}, f"{req.name}: {line}"


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    test_cmd = next(b for b in blocks if "pytest" in b).strip().splitlines()[-1]
    install, _, run = test_cmd.partition("&& pip install ")[2].partition(" && ")
    assert f"pip install -q {install}" in ci
    assert run.strip() in ci
