"""Build the pack's example workflows in the real frontend, so they are exactly what ComfyUI saves.

Each spec below is drawn in headless Chromium on a live host, serialized with the frontend's own
``graph.serialize()`` and written to ``example_workflows/<name>.json``; then it is run there (queued as a
user's Run does) and the page, with what the run shows on the nodes (previews, the motion view, the saved
video), becomes the ``<name>.jpg`` thumbnail (the template browser shows
``/api/workflow_templates/<pack>/<name>.jpg``).

    COMFYUI_URL=http://127.0.0.1:8199 python tests/e2e/build_workflow.py [name ...]
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from browser import BUILD_GRAPH_JS, close_dialogs, comfy_page  # noqa: E402
from workflow_check import ROOT, WORKFLOW_DIRS  # noqa: E402

sys.path.insert(0, str(ROOT))
from lipsync_core.render.settings import RenderSettings  # noqa: E402

NOTE_MODEL_INFO = (
    "StyleLipSync Model Info\n\n"
    "Lists the StyleLipSync weights in ComfyUI/models/stylelipsync (or a 'stylelipsync:' folder in "
    "extra_model_paths.yaml): kind, format version, stored config, parameter count, and whether each "
    "file is whole. Pick one file or '(all files)' and press Run."
)

DEMO_VIDEO = "stylelipsync_demo_video.mp4"  # the 0.1 workflows (tests/fixtures) load these from ComfyUI/input
DEMO_AUDIO = "stylelipsync_demo_target.wav"
DEMO_OTHER_STYLE = "stylelipsync_demo_other_style.mp4"
INPUT_FILES = {  # name in ComfyUI/input -> file of the pack (the e2e tests copy them for the 0.1 workflows)
    DEMO_VIDEO: "lipsync_core/assets/demo/video.mp4",
    DEMO_AUDIO: "lipsync_core/assets/demo/target.wav",
    DEMO_OTHER_STYLE: "lipsync_core/assets/demo/other_style.mp4",
}
DEMO_MODELS = "demo (shipped)"  # lipsync_core/assets/demo_models/, shipped with the pack
MODEL_WIDGETS = {"motion_model": DEMO_MODELS, "renderer": DEMO_MODELS, "mouth_model": DEMO_MODELS, "vae": DEMO_MODELS}
FAST = {"steps": RenderSettings.steps, "chunk_size": RenderSettings.chunk_size}  # the demo renderer: seconds on a CPU
DEMO_MEDIA = (
    "Inputs: StyleLipSync Demo Media gives the clips shipped with the pack (a puppet speaking, new speech for it, "
    "another speaker's clip), so this runs as it is. For your own: Load Video + Get Video Components (or "
    "VideoHelperSuite's Load Video) and Load Audio in their place."
)
MODELS_NOTE = (
    "Models: 'demo (shipped)' are the pack's small demo weights (lipsync_core/assets/demo_models). Your own "
    "motion, renderer, mouth_model and vae .safetensors go in ComfyUI/models/stylelipsync and appear in the same "
    f"lists. Steps: {RenderSettings.steps} is enough for the demo renderer; raise it for larger models."
)
NOTE_DEMO = (
    "StyleLipSync demo: the modular chain\n\n"
    "The demo person's video gets new speech. The video is tracked once; its own audio and lips are the style "
    "reference; Match Length cuts the video (and its track) to the new audio; stage 1 predicts the lip motion "
    "(the Predict node draws it); Preview Motion shows the predicted lips and the attention over the reference; "
    "Render repaints the lower face.\n\n" + DEMO_MEDIA + "\n\n" + MODELS_NOTE
)
NOTE_VHS = (
    "StyleLipSync with VideoHelperSuite\n\n"
    "The modular chain with VideoHelperSuite's Video Combine writing the mp4 with the new audio. With your own "
    "clip, VHS Load Video gives frames, the video's own audio and video_info (its loaded_fps is the frame rate "
    "every node uses); connect them where Demo Media's outputs are.\n\n" + DEMO_MEDIA + "\n\n" + MODELS_NOTE
)
NOTE_CORE = (
    "StyleLipSync all in one, core video nodes\n\n"
    "A VIDEO in, a VIDEO out: the all-in-one node takes the video's frames, fps and own sound (its style "
    "reference), tracks, predicts and renders, and gives the lip-synced VIDEO with the new speech for Save "
    "Video. Change only the seed and run again: only the render runs.\n\n" + DEMO_MEDIA + "\n\n" + MODELS_NOTE
)  # fmt: skip
NOTE_STYLE = (
    "StyleLipSync style transfer\n\n"
    "The lips follow the new speech in ANOTHER person's speaking style: the style clip (a different speaker, "
    "with its own audio) is the style reference instead of the video itself. Style strength 0 gives the "
    "model's generic style, 1 the style clip's.\n\n" + DEMO_MEDIA + "\n\n" + MODELS_NOTE
)
NOTE_PERSONALIZE = (
    "StyleLipSync personalize, then lip-sync\n\n"
    "Personalize fine-tunes the models on footage of the person you dub (here the demo puppet's 5.3 s; with your "
    "own, a minute or more of the person speaking helps): it learns this face and this person's lip movements, "
    "then the all-in-one node lip-syncs the clip to new speech with the personalized models. The models are saved "
    "in ComfyUI/models/stylelipsync/<name>/ (Load Models lists them after a refresh); running again with the same "
    "inputs loads them instead of training. Steps: 100 here, about a minute on a 2-core CPU, to show the chain; "
    "the node's default, 1200 (about 12 minutes), renders better. The progress bar counts the steps and Cancel "
    "stops between two.\n\n"
    + DEMO_MEDIA
)
PERSONALIZE_STEPS = 100  # the example's budget: about a minute on a CPU (the node's default is the 12-minute one)


def _save(prefix: str, pos: list[int]) -> dict[str, Any]:
    widgets = {"filename_prefix": prefix, "format": "mp4", "codec": "h264"}
    return {"type": "SaveVideo", "pos": pos, "size": [360, 420], "widgets": widgets}


SPECS: dict[str, dict[str, Any]] = {
    "stylelipsync_model_info": {
        "nodes": [
            {"type": "Note", "pos": [40, 60], "size": [360, 200], "widgets": {"text": NOTE_MODEL_INFO}},
            {"type": "StyleLipSyncModelInfo", "pos": [440, 60], "size": [420, 240]},
            {"type": "PreviewAny", "pos": [900, 60], "size": [420, 240]},
        ],
        "links": [[1, 0, 2, 0]],
    },
    "stylelipsync_1_demo": {
        "nodes": [
            {"type": "Note", "pos": [40, 40], "size": [400, 380], "widgets": {"text": NOTE_DEMO}},  # 0
            {"type": "StyleLipSyncDemoMedia", "pos": [40, 460], "size": [300, 260]},  # 1
            {"type": "StyleLipSyncLoadModels", "pos": [480, 40], "size": [360, 160], "widgets": MODEL_WIDGETS},  # 2
            {"type": "StyleLipSyncTrackFaces", "pos": [680, 460], "size": [320, 220]},  # 3
            {"type": "StyleLipSyncStyleReference", "pos": [1040, 40], "size": [320, 200]},  # 4
            {"type": "StyleLipSyncMatchLength", "pos": [1040, 460], "size": [320, 170],
             "widgets": {"policy": "trim_to_audio"}},  # 5
            {"type": "StyleLipSyncAudioFeatures", "pos": [1400, 460], "size": [320, 170]},  # 6
            {"type": "StyleLipSyncPredictMotion", "pos": [1400, 40], "size": [360, 360]},  # 7
            {"type": "StyleLipSyncPreviewMotion", "pos": [1800, 40], "size": [280, 120]},  # 8
            {"type": "PreviewImage", "pos": [2120, 40], "size": [300, 300]},  # 9
            {"type": "PreviewImage", "pos": [2440, 40], "size": [300, 300]},  # 10
            {"type": "StyleLipSyncRender", "pos": [1800, 460], "size": [320, 330], "widgets": FAST},  # 11
            {"type": "CreateVideo", "pos": [2160, 460], "size": [260, 100]},  # 12
            _save("stylelipsync/demo", [2460, 460]),  # 13
        ],  # fmt: skip
        "links": [
            [1, 0, 3, "images"], [1, 1, 3, "fps"], [2, 0, 3, "models"],
            [2, 0, 4, "models"], [3, 0, 4, "video_track"], [1, 2, 4, "video_audio"],
            [1, 0, 5, "images"], [1, 3, 5, "audio"], [1, 1, 5, "fps"], [3, 0, 5, "track"],
            [2, 0, 6, "models"], [5, 1, 6, "audio"], [5, 0, 6, "images"], [1, 1, 6, "fps"],
            [2, 0, 7, "models"], [6, 0, 7, "features"], [4, 0, 7, "style"],
            [2, 0, 8, "models"], [5, 0, 8, "images"], [5, 3, 8, "track"], [7, 0, 8, "motion"],
            [8, 0, 9, "images"], [8, 1, 10, "images"],
            [2, 0, 11, "models"], [5, 0, 11, "images"], [5, 3, 11, "track"], [7, 0, 11, "motion"],
            [11, 0, 12, "images"], [5, 1, 12, "audio"], [1, 1, 12, "fps"], [12, 0, 13, "video"],
        ],  # fmt: skip
    },
    "stylelipsync_2_videohelpersuite": {
        "nodes": [
            {"type": "Note", "pos": [40, 40], "size": [400, 300], "widgets": {"text": NOTE_VHS}},  # 0
            {"type": "StyleLipSyncDemoMedia", "pos": [40, 380], "size": [300, 260]},  # 1
            {"type": "StyleLipSyncLoadModels", "pos": [480, 40], "size": [360, 160], "widgets": MODEL_WIDGETS},  # 2
            {"type": "StyleLipSyncTrackFaces", "pos": [720, 380], "size": [320, 220]},  # 3
            {"type": "StyleLipSyncStyleReference", "pos": [1080, 40], "size": [320, 200]},  # 4
            {"type": "StyleLipSyncMatchLength", "pos": [1080, 380], "size": [320, 190],
             "widgets": {"policy": "trim_to_audio"}},  # 5
            {"type": "StyleLipSyncAudioFeatures", "pos": [1440, 380], "size": [320, 190]},  # 6
            {"type": "StyleLipSyncPredictMotion", "pos": [1440, 40], "size": [360, 300]},  # 7
            {"type": "StyleLipSyncRender", "pos": [1840, 380], "size": [320, 330], "widgets": FAST},  # 8
            {"type": "VHS_VideoCombine", "pos": [2200, 380], "size": [360, 600],
             "widgets": {"filename_prefix": "stylelipsync/vhs", "format": "video/h264-mp4"}},  # 9
        ],  # fmt: skip
        "links": [
            [1, 0, 3, "images"], [1, 1, 3, "fps"], [2, 0, 3, "models"],
            [2, 0, 4, "models"], [3, 0, 4, "video_track"], [1, 2, 4, "video_audio"],
            [1, 0, 5, "images"], [1, 3, 5, "audio"], [1, 1, 5, "fps"], [3, 0, 5, "track"],
            [2, 0, 6, "models"], [5, 1, 6, "audio"], [5, 0, 6, "images"], [1, 1, 6, "fps"],
            [2, 0, 7, "models"], [6, 0, 7, "features"], [4, 0, 7, "style"],
            [2, 0, 8, "models"], [5, 0, 8, "images"], [5, 3, 8, "track"], [7, 0, 8, "motion"],
            [8, 0, 9, "images"], [5, 1, 9, "audio"], [1, 1, 9, "frame_rate"],
        ],  # fmt: skip
    },
    "stylelipsync_3_core_video_all_in_one": {
        "nodes": [
            {"type": "Note", "pos": [40, 40], "size": [400, 260], "widgets": {"text": NOTE_CORE}},  # 0
            {"type": "StyleLipSyncDemoMedia", "pos": [40, 340], "size": [300, 260]},  # 1
            {"type": "StyleLipSyncLoadModels", "pos": [480, 40], "size": [360, 160], "widgets": MODEL_WIDGETS},  # 2
            {"type": "StyleLipSyncLipSync", "pos": [880, 40], "size": [340, 500], "widgets": FAST},  # 3
            _save("stylelipsync/core", [1260, 40]),  # 4
        ],  # fmt: skip
        "links": [[2, 0, 3, "models"], [1, 6, 3, "video"], [1, 3, 3, "audio"], [3, 4, 4, "video"]],
    },
    "stylelipsync_4_style_transfer": {
        "nodes": [
            {"type": "Note", "pos": [40, 40], "size": [400, 280], "widgets": {"text": NOTE_STYLE}},  # 0
            {"type": "StyleLipSyncDemoMedia", "pos": [40, 360], "size": [300, 260]},  # 1
            {"type": "StyleLipSyncLoadModels", "pos": [480, 40], "size": [360, 160], "widgets": MODEL_WIDGETS},  # 2
            {"type": "StyleLipSyncLipSync", "pos": [880, 40], "size": [340, 540],
             "widgets": {**FAST, "style_strength": 1.0}},  # 3
            _save("stylelipsync/style_transfer", [1260, 40]),  # 4
        ],  # fmt: skip
        "links": [
            [2, 0, 3, "models"], [1, 0, 3, "images"], [1, 3, 3, "audio"], [1, 1, 3, "fps"],
            [1, 4, 3, "style_images"], [1, 5, 3, "style_audio"], [3, 4, 4, "video"],
        ],  # fmt: skip
    },
    "stylelipsync_5_personalize": {
        "nodes": [
            {"type": "Note", "pos": [40, 40], "size": [400, 360], "widgets": {"text": NOTE_PERSONALIZE}},  # 0
            {"type": "StyleLipSyncDemoMedia", "pos": [40, 440], "size": [300, 280]},  # 1
            {"type": "StyleLipSyncLoadModels", "pos": [480, 40], "size": [360, 160], "widgets": MODEL_WIDGETS},  # 2
            {"type": "StyleLipSyncPersonalize", "pos": [480, 260], "size": [360, 330],
             "widgets": {"name": "demo_person", "steps": PERSONALIZE_STEPS}},  # 3
            {"type": "StyleLipSyncLipSync", "pos": [880, 40], "size": [340, 500], "widgets": FAST},  # 4
            _save("stylelipsync/personalized", [1260, 40]),  # 5
            {"type": "PreviewAny", "pos": [880, 580], "size": [340, 200]},  # 6
        ],  # fmt: skip
        "links": [
            [2, 0, 3, "models"], [1, 7, 3, "video"], [3, 0, 4, "models"], [1, 6, 4, "video"], [1, 3, 4, "audio"],
            [4, 4, 5, "video"], [3, 1, 6, 0],
        ],  # fmt: skip
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

RUN_JS = """
async () => { await window.app.queuePrompt(0, 1); }
"""

FIT_JS = """
async () => {
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
  const box = el.getBoundingClientRect();
  return {x: box.left, y: box.top, width: w / (el.width / box.width), height: h / (el.height / box.height)};
}
"""


def _wait_for_the_queue(url: str, timeout: float = 900.0) -> None:
    """Until the host has run everything queued (the run a thumbnail shows)."""
    deadline = time.monotonic() + timeout
    time.sleep(1.0)
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/queue", timeout=30) as resp:
            queue = json.loads(resp.read())
        if not queue["queue_running"] and not queue["queue_pending"]:
            return
        time.sleep(1.0)
    raise TimeoutError(f"the host did not finish the run in {timeout:.0f} s")


def _thumbnail(png: bytes, size: tuple[int, int] = (640, 400)) -> bytes:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.thumbnail(size)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


def build(url: str, names: list[str], out_dir: Path) -> list[Path]:
    written = []
    with comfy_page(url) as (page, _log):
        close_dialogs(page)
        for name in names:
            page.evaluate(BUILD_GRAPH_JS, SPECS[name])
            workflow = json.loads(page.evaluate(SERIALIZE_JS))
            workflow["extra"].pop("ds", None)  # the page's view is not part of the workflow
            path = out_dir / f"{name}.json"
            path.write_text(json.dumps(workflow, indent=2) + "\n", encoding="utf-8")
            page.evaluate(RUN_JS)  # a real run: the thumbnail shows its results on the nodes
            _wait_for_the_queue(url)
            page.wait_for_timeout(1500)  # previews load
            clip = page.evaluate(FIT_JS)
            page.wait_for_timeout(500)
            path.with_suffix(".jpg").write_bytes(_thumbnail(page.screenshot(clip=clip, type="png")))
            written += [path, path.with_suffix(".jpg")]
    return written


if __name__ == "__main__":
    url = os.environ.get("COMFYUI_URL", "http://127.0.0.1:8199")
    chosen = sys.argv[1:] or sorted(SPECS)
    target = ROOT / WORKFLOW_DIRS[0]
    target.mkdir(exist_ok=True)
    for p in build(url, chosen, target):
        print(p.relative_to(ROOT))
