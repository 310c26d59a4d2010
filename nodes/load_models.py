"""StyleLipSyncLoadModels: the motion model, renderer, mouth model and VAE as one STYLELIPSYNC_MODELS bundle."""

from __future__ import annotations

import json
from typing import Any

from . import graph_types as gt
from .comfy_host import CATEGORY, MODEL_FOLDER, model_filenames
from .lipsync_models import DEMO_CHOICE, NO_VAE, load_bundle, model_file
from .model_cache import file_key


def _choices(*extra: str) -> list[str]:
    return [DEMO_CHOICE, *extra, *model_filenames()]


class StyleLipSyncLoadModels:
    DESCRIPTION = (
        "Loads the StyleLipSync models from models/stylelipsync (extra_model_paths.yaml works) or the demo weights "
        "shipped with the pack. Loaded once and shared by every node and run; ComfyUI offloads them when other "
        "models need the memory."
    )
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (gt.MODELS,)
    RETURN_NAMES = ("models",)
    OUTPUT_TOOLTIPS = ("Stage 1 (lip motion), stage 2 (renderer), the mouth model and the renderer's VAE.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        folder = {"stylelipsync_folder": MODEL_FOLDER}
        return {
            "required": {
                "motion_model": (_choices(), {"default": DEMO_CHOICE, **folder,
                                              "tooltip": "Stage 1: audio + style reference -> lip motion."}),
                "renderer": (_choices(), {"default": DEMO_CHOICE, **folder,
                                          "tooltip": "Stage 2: the latent diffusion face renderer."}),
                "mouth_model": (_choices(), {"default": DEMO_CHOICE, **folder,
                                             "tooltip": "The linear mouth model (landmarks <-> 13 mouth params)."}),
                "vae": (_choices(NO_VAE), {"default": DEMO_CHOICE, **folder,
                                           "tooltip": "The renderer's own VAE; or none, and connect a ComfyUI VAE "
                                           "of the same family to the render node."}),
            }
        }  # fmt: skip

    @classmethod
    def IS_CHANGED(cls, motion_model: str, renderer: str, mouth_model: str, vae: str = NO_VAE) -> str:
        """A replaced file reloads (the cache keys on mtime and size)."""
        keys = []
        for choice, kind, name in ((motion_model, "motion", "motion_model"), (renderer, "renderer", "renderer"),
                                   (mouth_model, "mouth_model", "mouth_model"), (vae, "vae", "vae")):  # fmt: skip
            try:
                keys.append(file_key(model_file(choice, kind, name)) if choice != NO_VAE else None)
            except Exception:  # noqa: BLE001 - the run reports the real problem
                keys.append(choice)
        return json.dumps(keys)

    def load(self, motion_model: str, renderer: str, mouth_model: str, vae: str = NO_VAE) -> tuple[Any]:
        return (load_bundle(motion_model, renderer, mouth_model, vae),)


NODE_CLASS_MAPPINGS = {"StyleLipSyncLoadModels": StyleLipSyncLoadModels}
NODE_DISPLAY_NAME_MAPPINGS = {"StyleLipSyncLoadModels": "StyleLipSync Load Models"}
