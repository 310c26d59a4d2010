"""ComfyUI entry point of the StyleLipSync node pack (V3 schema: ComfyUI calls comfy_entrypoint)."""

from .nodes import comfy_entrypoint

WEB_DIRECTORY = "./web"

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
