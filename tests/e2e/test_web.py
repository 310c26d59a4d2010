"""The web extension in headless Chromium against the live host: loads cleanly, draws, shows its widgets.

Needs Debian's chromium (``apt-get install -y chromium``) and pip ``playwright`` (no browser download);
skipped without them. Screenshots go to ``STYLELIPSYNC_SCREENSHOTS`` (default /tmp): stylelipsync-web.png
(the Model Info workflow after a run) and stylelipsync-motion.png (the motion view on sample data).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from workflow_check import workflow_files

pytest.importorskip("playwright.sync_api")
from browser import CHROMIUM_FLAGS, chromium_path, close_dialogs, comfy_page  # noqa: E402

if chromium_path() is None:
    pytest.skip("no Chromium (apt-get install -y chromium, or set CHROMIUM_PATH)", allow_module_level=True)



def our_script(client) -> str:
    """Where the host serves our extension: /extensions/<the pack's folder name>/js/stylelipsync.js."""
    [path] = [p for p in client.request("GET", "/extensions") if p.endswith("/stylelipsync.js")]
    return path
SHOTS = Path(os.environ.get("STYLELIPSYNC_SCREENSHOTS", "/tmp"))


def _page_errors(url: str, script: str, block_ours: bool) -> tuple[list[str], list[tuple[str, int]], bool]:
    """Console errors and uncaught exceptions of one page load, the extension requests, and registration."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    ours: list[tuple[str, int]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page()
            page.on(
                "console", lambda m: errors.append(f"{m.text} @ {m.location.get('url')}") if m.type == "error" else None
            )
            page.on("pageerror", lambda e: errors.append(f"uncaught {e}: {getattr(e, 'stack', '')}"))
            page.on("response", lambda r: ours.append((r.url, r.status)) if r.url.endswith(script) else None)
            if block_ours:
                page.route("**" + script, lambda route: route.abort())
            page.goto(url, wait_until="networkidle", timeout=120_000)
            page.wait_for_function("() => window.app && window.app.graph", timeout=120_000)
            page.wait_for_timeout(1500)
            registered = page.evaluate(
                "() => (window.app.extensions || []).some((e) => e.name === 'StyleLipSync.Views')"
            )
        finally:
            browser.close()
    return errors, ours, registered


def test_extension_loads_without_console_errors(comfy_host):
    """Our script is served and registered, and the page says nothing it does not say without it."""
    script = our_script(comfy_host)
    errors, ours, registered = _page_errors(comfy_host.url, script, block_ours=False)
    assert (comfy_host.url + script, 200) in ours
    assert registered, "app.registerExtension did not run"
    assert [e for e in errors if "stylelipsync" in e.lower()] == []
    baseline, _, _ = _page_errors(comfy_host.url, script, block_ours=True)

    def split(msgs: list[str]) -> tuple[set[str], set[str]]:
        """(URLs that failed to load, first lines of uncaught exceptions and other errors)."""
        failed = {m.split(" @ ")[-1] for m in msgs if m.startswith("Failed to load resource")}
        other = {m.splitlines()[0] for m in msgs if not m.startswith("Failed to load resource")}
        return failed, other

    failed, other = split(errors)
    base_failed, base_other = split([e for e in baseline if "stylelipsync" not in e.lower()])
    # The host's own noise (a fresh user's missing settings files, the offline release check, a
    # frontend settings exception, favicon.ico now and then) shows up with or without the
    # extension; the extension must add none.
    assert failed - base_failed - {comfy_host.url + "/favicon.ico"} == set(), errors
    assert other - base_other == set(), errors


def test_model_info_widget_after_a_run(comfy_host, host_models_dir):
    import torch

    from lipsync_core.weights import save_tensors

    save_tensors(host_models_dir / "web-motion.safetensors", {"w": torch.ones(8, 8)}, "motion", {"d_model": 8})
    [path] = [p for p in workflow_files() if p.stem == "stylelipsync_model_info"]
    workflow = json.loads(path.read_text(encoding="utf-8"))
    with comfy_page(comfy_host.url) as (page, log):
        close_dialogs(page)
        page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
        page.evaluate(
            """() => {
                const node = window.app.graph._nodes.find((n) => n.type === 'StyleLipSyncModelInfo');
                node.widgets.find((w) => w.name === 'model').value = 'web-motion.safetensors';
            }"""
        )
        page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
        page.wait_for_function(
            """() => {
                const node = window.app.graph._nodes.find((n) => n.type === 'StyleLipSyncModelInfo');
                const area = node && node.__stylelipsyncInfo;
                return area && area.value.includes('web-motion.safetensors: OK');
            }""",
            timeout=120_000,
        )
        state = page.evaluate(
            """() => {
                const node = window.app.graph._nodes.find((n) => n.type === 'StyleLipSyncModelInfo');
                const saved = window.app.graph.serialize().nodes.find((n) => n.id === node.id);
                return {widgets: node.widgets.map((w) => w.name), saved: saved.widgets_values,
                        visible: node.__stylelipsyncInfo.isConnected};
            }"""
        )
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / "stylelipsync-web.png"))
        assert [e for e in log.errors() if "stylelipsync" in e.lower()] == []
    assert "stylelipsync_info_view" in state["widgets"] and state["visible"]
    assert state["saved"] == ["web-motion.safetensors"], "the display widget must not be saved with the workflow"


MOTION_JS = """
async ([script, payloads]) => {
  const mod = await import(script);
  const results = [];
  for (const p of payloads) {
    const canvas = document.createElement('canvas');
    canvas.width = 480; canvas.height = 260;
    canvas.id = 'slsync-' + results.length;
    canvas.style.cssText = results.length ? 'display:none' : 'position:fixed;left:0;top:0;z-index:100000;';
    document.body.appendChild(canvas);
    const info = mod.drawMotion(canvas, mod.normalizeMotion(p));
    const px = canvas.getContext('2d').getImageData(0, 0, 480, 260).data;
    const colours = new Set();
    for (let i = 0; i < px.length; i += 4 * 97) colours.add(px[i] << 16 | px[i + 1] << 8 | px[i + 2]);
    results.push({...info, colours: colours.size});
  }
  return results;
}
"""


def test_motion_view_draws_whatever_it_gets(comfy_host):
    import numpy as np
    from StyleLipSync.nodes.views import MOTION_KEY, motion_view_payload

    frames, refs = 75, 40
    t = np.arange(frames)
    attention = np.exp(-((np.arange(refs)[None, :] - t[:, None] * refs / frames) ** 2) / 20.0)  # a moving focus
    # exactly what the Predict-lip-motion node will send (nodes/ui_payload.py)
    [full] = motion_view_payload(
        25.0, 0.5 + 0.5 * np.sin(t / 3.0), envelope=np.abs(np.sin(t / 2.0)), attention=attention
    )[MOTION_KEY]
    partial = [
        {"opening": full["opening"]},  # no fps, no envelope, no attention
        {"fps": "x", "envelope": full["envelope"], "attention": {"rows": 3, "cols": 3, "values": [1, 2]}},  # bad map
        {},
        None,
    ]
    with comfy_page(comfy_host.url) as (page, log):
        close_dialogs(page)
        results = page.evaluate(MOTION_JS, [comfy_host.url + our_script(comfy_host), [full, *partial]])
        page.locator("#slsync-0").screenshot(path=str(SHOTS / "stylelipsync-motion.png"))
        assert [e for e in log.errors() if "stylelipsync" in e.lower()] == []
    assert results[0] == {"frames": frames, "attention": True, "colours": results[0]["colours"]}
    assert results[0]["colours"] > 20  # curve, envelope and a colour-mapped attention map
    assert results[1]["frames"] == frames and not results[1]["attention"]
    assert results[2]["frames"] == frames and not results[2]["attention"]  # the malformed map is left out
    assert results[3]["frames"] == 0 and results[4]["frames"] == 0


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_example_workflow_loads_in_the_frontend_and_converts_like_it(comfy_host, path):
    """The frontend accepts the file (its schema check, no missing nodes), and our UI->API conversion
    gives exactly the prompt the frontend itself would queue (graphToPrompt)."""
    from comfy_client import ui_to_api

    workflow = json.loads(path.read_text(encoding="utf-8"))
    with comfy_page(comfy_host.url) as (page, log):
        close_dialogs(page)
        page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
        page.wait_for_timeout(500)
        frontend = json.loads(page.evaluate("async () => JSON.stringify((await window.app.graphToPrompt()).output)"))
        loaded_types = page.evaluate("() => window.app.graph._nodes.map((n) => n.type)")
        alerts = page.evaluate("() => document.body.innerText")
    assert sorted(loaded_types) == sorted(n["type"] for n in workflow["nodes"])
    assert "Invalid workflow" not in alerts and "missing" not in alerts.lower(), alerts[:2000]
    info = comfy_host.object_info()
    ours = ui_to_api(workflow, info)
    assert sorted(ours) == sorted(frontend)
    for node_id, entry in ours.items():
        theirs = frontend[node_id]
        assert entry["class_type"] == theirs["class_type"]
        declared = {
            n for section in ("required", "optional") for n in info[entry["class_type"]]["input"].get(section, {})
        }
        # the frontend also sends its own display widgets' values (e.g. PreviewAny's "preview"); the server ignores
        # them. Undeclared widgets a node adds itself (VHS Video Combine's crf, pix_fmt, ...) are sent by both.
        sent = {k: v for k, v in theirs["inputs"].items() if k in declared or k in entry["inputs"]}
        assert sent == entry["inputs"], node_id
    assert [e for e in log.errors() if "stylelipsync" in e.lower()] == []


def test_predict_motion_shows_its_view_after_a_run_of_the_demo(comfy_host):
    """The demo workflow queued from the page: the Predict Lip Motion node draws what it predicted."""
    import random

    [path] = [p for p in workflow_files() if p.stem == "stylelipsync_1_demo"]
    workflow = json.loads(path.read_text(encoding="utf-8"))
    strength = round(random.uniform(0.5, 0.95), 2)  # a new value: the node runs again instead of coming from cache
    with comfy_page(comfy_host.url) as (page, log):
        close_dialogs(page)
        page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
        saved_before = page.evaluate(
            """(strength) => {
                const node = window.app.graph._nodes.find((n) => n.type === 'StyleLipSyncPredictMotion');
                node.widgets.find((w) => w.name === 'style_strength').value = strength;
                return window.app.graph.serialize().nodes.find((n) => n.id === node.id).widgets_values;
            }""",
            strength,
        )
        page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
        page.wait_for_function(
            """() => {
                const node = window.app.graph._nodes.find((n) => n.type === 'StyleLipSyncPredictMotion');
                const view = node && node.__stylelipsyncMotion;
                return view && view.motion && view.motion.opening.length > 0;
            }""",
            timeout=300_000,
        )
        state = page.evaluate(
            """() => {
                const node = window.app.graph._nodes.find((n) => n.type === 'StyleLipSyncPredictMotion');
                const view = node.__stylelipsyncMotion;
                const saved = window.app.graph.serialize().nodes.find((n) => n.id === node.id);
                const canvas = window.app.canvas;
                canvas.ds.scale = 1.2;
                canvas.ds.offset = [40 / 1.2 - node.pos[0], 80 / 1.2 - node.pos[1]];
                canvas.setDirty(true, true);
                return {widgets: node.widgets.map((w) => w.name), saved: saved.widgets_values,
                        frames: view.motion.opening.length, fps: view.motion.fps,
                        attention: Boolean(view.motion.attention), visible: view.box.isConnected,
                        drawn: view.canvas.width > 64};
            }"""
        )
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "stylelipsync-predict.png"))
        assert [e for e in log.errors() if "stylelipsync" in e.lower()] == []
    assert state["frames"] == 46 and state["fps"] == 25 and state["attention"] and state["visible"] and state["drawn"]
    assert "stylelipsync_motion_view" in state["widgets"]
    assert state["saved"] == saved_before, "the view widget must not be saved with the workflow"
