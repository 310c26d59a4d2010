"""A small client for a running ComfyUI: UI workflow -> API prompt, queue, wait, fetch outputs, interrupt.

Standard library only (the tests run in the project's venv, not the host's). The conversion follows
what the frontend does when it queues a graph (graphToPrompt): widget values are matched to the
node's widget inputs in declaration order (with the extra "control after generate" value after a
seed), links become ``[origin node id, origin slot]``, Reroutes are followed, PrimitiveNodes and
notes vanish (their values already sit in the targets' widgets), muted nodes are dropped.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workflow_check import FRONTEND_ONLY_NODES, widget_names

MUTED, BYPASSED = 2, 4


class ComfyError(RuntimeError):
    """The host refused a prompt or a prompt failed; the message carries the host's own words."""


class ComfyClient:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex
        self._object_info: dict[str, Any] | None = None

    # ------------------------------------------------------------------ HTTP
    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ComfyError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode(errors='replace')[:2000]}") from exc
        ctype = resp.headers.get("Content-Type", "")
        return json.loads(raw) if "json" in ctype else raw

    def object_info(self, refresh: bool = False) -> dict[str, Any]:
        if self._object_info is None or refresh:
            self._object_info = self.request("GET", "/object_info")
        return self._object_info

    # ------------------------------------------------------------------ UI -> API
    def to_api(self, workflow: Mapping[str, Any]) -> dict[str, Any]:
        return ui_to_api(workflow, self.object_info())

    # ------------------------------------------------------------------ running
    def queue(self, prompt: Mapping[str, Any]) -> str:
        """Queue an API-format prompt; returns its id, or raises with the host's validation errors."""
        reply = self.request("POST", "/prompt", {"prompt": prompt, "client_id": self.client_id})
        if reply.get("node_errors"):
            raise ComfyError(f"prompt refused: {json.dumps(reply['node_errors'])[:2000]}")
        return reply["prompt_id"]

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        return self.request("GET", f"/history/{prompt_id}").get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 300.0, poll: float = 0.25) -> dict[str, Any]:
        """The finished history entry (status "success" or "error"); raises on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.history(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                if entry["status"].get("status_str") in ("success", "error") or entry["status"]["completed"]:
                    return entry
            time.sleep(poll)
        raise ComfyError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")

    def run(self, prompt: Mapping[str, Any], timeout: float = 300.0) -> dict[str, Any]:
        """Queue, wait, and return the history entry; raises ComfyError with the host's message on failure."""
        entry = self.wait(self.queue(prompt), timeout)
        status = entry.get("status", {})
        if status.get("status_str") != "success":
            raise ComfyError(f"prompt failed: {error_message(entry)}")
        return entry

    def interrupt(self) -> None:
        """Cancel what runs now (ComfyUI raises at the next interruption check: between nodes, or
        between chunks in nodes that check, as ours do)."""
        self.request("POST", "/interrupt", {})

    def is_running(self, prompt_id: str) -> bool:
        return any(item[1] == prompt_id for item in self.queue_state().get("queue_running", []))

    def wait_until_running(self, prompt_id: str, timeout: float = 60.0, poll: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running(prompt_id):
                return
            if self.history(prompt_id):
                raise ComfyError(f"prompt {prompt_id} finished before it could be seen running")
            time.sleep(poll)
        raise ComfyError(f"prompt {prompt_id} did not start within {timeout:.0f} s")

    def queue_state(self) -> dict[str, Any]:
        return self.request("GET", "/queue")

    def fetch_output(self, item: Mapping[str, Any], dest: Path) -> Path:
        """Download one output file record ({filename, subfolder, type}) to ``dest``."""
        query = urllib.parse.urlencode(
            {"filename": item["filename"], "subfolder": item.get("subfolder", ""), "type": item.get("type", "output")}
        )
        dest.write_bytes(self.request("GET", f"/view?{query}"))
        return dest


def error_message(entry: Mapping[str, Any]) -> str:
    """The execution_error (or interruption) message recorded in a history entry."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_type')}: {data.get('exception_message')}"
        if kind == "execution_interrupted":
            return f"interrupted at {data.get('node_type')}"
    return json.dumps(entry.get("status"))[:500]


def elapsed_seconds(entry: Mapping[str, Any]) -> float:
    """Wall time of a finished prompt on the host, from its execution_start to its last status message."""
    stamps = {kind: data.get("timestamp") for kind, data in entry.get("status", {}).get("messages", [])}
    end = max(v for k, v in stamps.items() if k != "execution_start" and v is not None)
    return (end - stamps["execution_start"]) / 1000.0


def cached_nodes(entry: Mapping[str, Any]) -> list[str]:
    """Nodes the host did not run because their outputs were cached from an earlier prompt."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_cached":
            return list(data.get("nodes", []))
    return []


def was_interrupted(entry: Mapping[str, Any]) -> bool:
    return any(kind == "execution_interrupted" for kind, _ in entry.get("status", {}).get("messages", []))


# ---------------------------------------------------------------------- conversion


def _link_table(workflow: Mapping[str, Any]) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for link in workflow.get("links") or []:
        if isinstance(link, Mapping):
            out[int(link["id"])] = (int(link["origin_id"]), int(link["origin_slot"]))
        else:
            out[int(link[0])] = (int(link[1]), int(link[2]))
    return out


def ui_to_api(workflow: Mapping[str, Any], object_info: Mapping[str, Any]) -> dict[str, Any]:
    """The API prompt ``{node_id: {"class_type", "inputs"}}`` the frontend would queue for this workflow."""
    nodes = {int(n["id"]): n for n in workflow["nodes"]}
    links = _link_table(workflow)

    def source(link_id: int) -> tuple[int, int] | None:
        """Follow Reroutes back to a real output; None for a frontend-only source (PrimitiveNode)."""
        origin, slot = links[link_id]
        seen = set()
        while nodes[origin].get("type") == "Reroute":
            if origin in seen:
                raise ComfyError(f"reroute loop at node {origin}")
            seen.add(origin)
            upstream = (nodes[origin].get("inputs") or [{}])[0].get("link")
            if upstream is None:
                return None
            origin, slot = links[upstream]
        if nodes[origin].get("type") in FRONTEND_ONLY_NODES:
            return None
        return origin, slot

    prompt: dict[str, Any] = {}
    for nid, node in nodes.items():
        ntype = node.get("type")
        if ntype in FRONTEND_ONLY_NODES or node.get("mode", 0) == MUTED:
            continue
        if node.get("mode", 0) == BYPASSED:
            raise ComfyError(f"node {nid} ({ntype}) is bypassed: not supported by this converter")
        info = object_info.get(ntype)
        if info is None:
            raise ComfyError(f"node {nid}: the host has no node type {ntype!r} (pack not loaded?)")
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values")
        if isinstance(values, Mapping):  # VideoHelperSuite saves its widgets by name
            inputs.update({k: v for k, v in values.items() if k != "videopreview"})  # its preview state
        else:
            for name, value in zip(widget_names(info), values or [], strict=False):
                if name is not None:
                    inputs[name] = value
        for inp in node.get("inputs") or []:
            if inp.get("link") is None:
                continue
            src = source(int(inp["link"]))
            if src is not None:
                inputs[inp["name"]] = [str(src[0]), src[1]]
        prompt[str(nid)] = {"class_type": ntype, "inputs": inputs, "_meta": {"title": node.get("title") or ntype}}
    # drop links into nodes that were removed (muted) and inputs pointing at them
    for entry in prompt.values():
        for name, value in list(entry["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and value[0] not in prompt:
                del entry["inputs"][name]
    return prompt
