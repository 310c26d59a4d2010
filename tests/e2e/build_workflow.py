"""Build the pack's example workflows in the real frontend, so they are exactly what ComfyUI saves.

Each spec below is drawn in headless Chromium on a live host, serialized with the frontend's own
``graph.serialize()`` and written to ``example_workflows/<name>.json`` with a ``<name>.jpg`` thumbnail
(the template browser shows ``/api/workflow_templates/<pack>/<name>.jpg``).

    COMFYUI_URL=http://127.0.0.1:8199 python tests/e2e/build_workflow.py [name ...]
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from browser import BUILD_GRAPH_JS, close_dialogs, comfy_page  # noqa: E402
from workflow_check import ROOT, WORKFLOW_DIRS  # noqa: E402

NOTE_MODEL_INFO = (
    "StyleLipSync Model Info\n\n"
    "Lists the StyleLipSync weights in ComfyUI/models/stylelipsync (or a 'stylelipsync:' folder in "
    "extra_model_paths.yaml): kind, format version, stored config, parameter count, and whether each "
    "file is whole. Pick one file or '(all files)' and press Run."
)

SPECS: dict[str, dict[str, Any]] = {
    "stylelipsync_model_info": {
        "nodes": [
            {"type": "Note", "pos": [40, 60], "size": [360, 200], "widgets": {"text": NOTE_MODEL_INFO}},
            {"type": "StyleLipSyncModelInfo", "pos": [440, 60], "size": [420, 240]},
            {"type": "PreviewAny", "pos": [900, 60], "size": [420, 240]},
        ],
        "links": [[1, 0, 2, 0]],
    },
}

SERIALIZE_JS = """
async () => {
  // exactly what "Save" / "Export" writes (graphToPrompt().workflow: widget input slots compacted,
  // frontend version recorded), stringified here so undefined fields vanish instead of becoming null
  const app = window.app;
  return JSON.stringify(app.graphToPrompt ? (await app.graphToPrompt()).workflow : app.graph.serialize());
}
"""

FIT_AND_SNAPSHOT_JS = """
async ([width, height]) => {
  const canvas = window.app.canvas;
  const nodes = window.app.graph._nodes;
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const n of nodes) {
    x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 32);
    x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
  }
  const el = canvas.canvas;
  const margin = 40;
  const scale = Math.min((el.width - 2 * margin) / (x1 - x0), (el.height - 2 * margin) / (y1 - y0), 1.5);
  canvas.ds.scale = scale;
  canvas.ds.offset = [margin / scale - x0, margin / scale - y0];
  canvas.setDirty(true, true);
  canvas.draw(true, true);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  canvas.draw(true, true);
  const w = Math.min(el.width, Math.ceil((x1 - x0) * scale + 2 * margin));
  const h = Math.min(el.height, Math.ceil((y1 - y0) * scale + 2 * margin));
  const out = document.createElement("canvas");
  const k = Math.min(width / w, height / h);
  out.width = Math.round(w * k); out.height = Math.round(h * k);
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#202020"; ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(el, 0, 0, w, h, 0, 0, out.width, out.height);
  return out.toDataURL("image/jpeg", 0.88);
}
"""


def build(url: str, names: list[str], out_dir: Path) -> list[Path]:
    written = []
    with comfy_page(url) as (page, _log):
        close_dialogs(page)
        for name in names:
            page.evaluate(BUILD_GRAPH_JS, SPECS[name])
            workflow = json.loads(page.evaluate(SERIALIZE_JS))
            data_url = page.evaluate(FIT_AND_SNAPSHOT_JS, [640, 400])
            workflow["extra"].pop("ds", None)  # the view we set for the thumbnail is not part of the workflow
            path = out_dir / f"{name}.json"
            path.write_text(json.dumps(workflow, indent=2) + "\n", encoding="utf-8")
            path.with_suffix(".jpg").write_bytes(base64.b64decode(data_url.split(",", 1)[1]))
            written += [path, path.with_suffix(".jpg")]
    return written


if __name__ == "__main__":
    url = os.environ.get("COMFYUI_URL", "http://127.0.0.1:8199")
    chosen = sys.argv[1:] or sorted(SPECS)
    target = ROOT / WORKFLOW_DIRS[0]
    target.mkdir(exist_ok=True)
    for p in build(url, chosen, target):
        print(p.relative_to(ROOT))
