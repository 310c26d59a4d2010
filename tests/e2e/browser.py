"""Headless Chromium on ComfyUI's frontend, through Playwright and the system's browser.

Debian's ``chromium`` package (no browser download): ``apt-get install -y chromium``; pip ``playwright``
drives it with ``executable_path`` (default /usr/bin/chromium, or ``CHROMIUM_PATH``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if os.path.isfile(path) else None


@dataclass
class PageLog:
    """What the page said: console messages by level, uncaught errors, failed requests, loaded scripts."""

    console: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    scripts: list[tuple[str, int]] = field(default_factory=list)

    def errors(self) -> list[str]:
        return [f"console.error: {text}" for level, text in self.console if level == "error"] + [
            f"uncaught: {e}" for e in self.page_errors
        ]


@contextmanager
def comfy_page(url: str, width: int = 1600, height: int = 1000) -> Iterator[tuple[Any, PageLog]]:
    """A loaded ComfyUI page (app ready, node definitions registered) and the log of what it said."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError("no Chromium: apt-get install -y chromium, or set CHROMIUM_PATH")
    log = PageLog()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda msg: log.console.append((msg.type, msg.text)))
            page.on("pageerror", lambda exc: log.page_errors.append(str(exc)))
            page.on("requestfailed", lambda req: log.failed_requests.append(f"{req.url}: {req.failure}"))
            page.on(
                "response",
                lambda resp: log.scripts.append((resp.url, resp.status)) if "/extensions/" in resp.url else None,
            )
            page.goto(url, wait_until="networkidle", timeout=120_000)
            page.wait_for_function(
                "() => window.app && window.app.graph && window.LiteGraph"
                " && Object.keys(window.LiteGraph.registered_node_types || {}).length > 100",
                timeout=120_000,
            )
            yield page, log
        finally:
            browser.close()


def close_dialogs(page: Any) -> None:
    """Dismiss first-run dialogs (templates browser, release notes) that cover the canvas."""
    for _ in range(3):
        page.keyboard.press("Escape")
        page.wait_for_timeout(150)


BUILD_GRAPH_JS = """
(spec) => {
  const graph = window.app.graph;
  graph.clear();
  const made = [];
  for (const [i, n] of spec.nodes.entries()) {
    const node = window.LiteGraph.createNode(n.type);
    if (!node) throw new Error("no node type " + n.type);
    node.pos = n.pos || [80 + i * 460, 120];
    graph.add(node);
    if (n.size) node.setSize(n.size);
    for (const [name, value] of Object.entries(n.widgets || {})) {
      const w = node.widgets.find((w) => w.name === name);
      if (!w) throw new Error(n.type + " has no widget " + name);
      w.value = value;
      // as if the user picked it: widgets that add others (VHS's format -> crf, pix_fmt, ...) do so now
      if (typeof w.callback === "function") w.callback(value, window.app.canvas, node);
    }
    made.push(node);
  }
  for (const [a, aslot, b, bslot] of spec.links) made[a].connect(aslot, made[b], bslot);
  window.app.canvas.setDirty(true, true);
  return made.map((n) => n.id);
}
"""
"""Build a graph in the live frontend from ``{nodes: [{type, pos, size, widgets}], links: [[a, slot, b, slot]]}``."""
