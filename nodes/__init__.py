"""The StyleLipSync node pack for ComfyUI (V3 schema): the entry ComfyUI calls, and the list of nodes.

Files: ``host`` (ComfyUI's modules, models folder, model management, progress, attention), ``models``
(the model bundle and the caches), ``sockets`` (the pack's types and the conversions at the sockets),
``lipsync_nodes`` (the nodes: a schema and a call into lipsync_core.stages each), ``views`` (what the nodes
show). The maths lives in lipsync_core; nothing here imports the pack's core by name.
"""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .host import host_module, register_model_folder
from .lipsync_nodes import NODES
from .models import MODEL_CACHE, PREPARED, render_reuse

ROUTE_PREFIX = "/stylelipsync"
NODE_CLASS_MAPPINGS: dict[str, type[io.ComfyNode]] = {n.GET_SCHEMA().node_id: n for n in NODES}
"""Node id -> class, for tests and tools (ComfyUI itself registers the pack through :func:`comfy_entrypoint`)."""


def register_routes() -> bool:
    """``GET /stylelipsync/cache``: the model cache's entries and load counts, and the all-in-one node's reuse
    of its work before rendering ("prepared") and of the render's seed-independent work ("render", in blocks),
    so a user or a test can see that a second run read no model file and encoded no crop again."""
    server = host_module("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    web = host_module("aiohttp.web")
    if instance is None or web is None or getattr(instance, "routes", None) is None:
        return False

    async def cache_stats(request):
        return web.json_response({**MODEL_CACHE.stats(), "prepared": {"hits": PREPARED.hits,
                                                                     "misses": PREPARED.misses},
                                  "render": render_reuse()})

    instance.routes.get(f"{ROUTE_PREFIX}/cache")(cache_stats)
    return True


class StyleLipSyncExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> StyleLipSyncExtension:
    """Called by ComfyUI when it loads the pack: the models folder and the routes join the host here."""
    register_model_folder()
    register_routes()
    return StyleLipSyncExtension()


__all__ = ["NODES", "NODE_CLASS_MAPPINGS", "comfy_entrypoint"]
