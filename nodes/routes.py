"""Read-only HTTP routes of the pack on ComfyUI's server, all under ``/stylelipsync/``.

``GET /stylelipsync/cache``: the shared model cache's entries and load counts, so a test or a user
can see that a second run reused the loaded models.
"""

from __future__ import annotations

from .comfy_host import comfy_module
from .model_cache import MODEL_CACHE

ROUTE_PREFIX = "/stylelipsync"


def register_routes() -> bool:
    """Add the routes to the running PromptServer (before it starts serving); False outside ComfyUI."""
    server = comfy_module("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    web = comfy_module("aiohttp.web")
    if instance is None or web is None or getattr(instance, "routes", None) is None:
        return False

    async def cache_stats(request):
        return web.json_response(MODEL_CACHE.stats())

    instance.routes.get(f"{ROUTE_PREFIX}/cache")(cache_stats)
    return True
