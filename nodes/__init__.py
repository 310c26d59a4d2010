"""ComfyUI node adapters. Thin: graph plumbing only, the maths lives in lipsync_core.

Every node module exports its own NODE_CLASS_MAPPINGS / NODE_DISPLAY_NAME_MAPPINGS; they are merged
here. Importing this package never imports ComfyUI eagerly (plain pytest imports it too); inside
ComfyUI it registers the ``stylelipsync`` models folder with folder_paths.
"""

from . import audio_nodes, face_nodes, load_models, model_info, motion_nodes, render_nodes
from .comfy_host import register_model_folder
from .routes import register_routes

register_model_folder()
register_routes()

_NODE_MODULES = (load_models, face_nodes, audio_nodes, motion_nodes, render_nodes, model_info)

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
for _module in _NODE_MODULES:
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
