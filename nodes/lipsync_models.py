"""The STYLELIPSYNC_MODELS bundle: every model a lip-sync graph needs, loaded once through MODEL_CACHE.

Stage 1 (motion), stage 2 (renderer) and the renderer's own VAE are torch modules held as
:class:`HostedModel` (ComfyUI's model management moves and offloads them); the mouth model is a
small numpy linear map. The loader node picks each file from ``models/stylelipsync`` or the
weights shipped with the pack (``lipsync_core/assets/demo_models``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._core import LipSyncInputError, core_module, weights
from .comfy_host import comfy_module, resolve_model_path
from .hosted_model import HostedModel
from .model_cache import MODEL_CACHE, ModelCache

DEMO_CHOICE = "demo (shipped)"
NO_VAE = "(none: connect a VAE to the render node)"
DEMO_FOLDER = Path(__file__).resolve().parents[1] / "lipsync_core" / "assets" / "demo_models"
MODEL_FILES = weights.MODEL_FILES  # the names of a models folder (and of the shipped demo weights)


def model_file(choice: str, kind: str, input_name: str) -> Path:
    """The file behind a loader combo value: the shipped demo weights, a models-folder name, or a path."""
    if choice == DEMO_CHOICE:
        path = DEMO_FOLDER / MODEL_FILES[kind]
        if not path.is_file():
            raise LipSyncInputError(
                f"{input_name}: the demo weights are not installed ({path.name} missing in "
                "lipsync_core/assets/demo_models); pick a file from models/stylelipsync instead."
            )
        return path
    return resolve_model_path(choice, input_name)


def _hosted(path: Path, kind: str, cache: ModelCache) -> HostedModel:
    load_model = core_module("models.io").load_model

    def load(resolved: Path) -> HostedModel:
        return HostedModel(load_model(resolved, kind, "cpu"), name=f"{kind}:{resolved.name}")

    return cache.get(path, load, kind=kind)


def ready_all(hosted: list[HostedModel], memory_required: int = 0) -> list[torch.nn.Module]:
    """Load several models for one job in a single request, so loading one never offloads another."""
    mm = comfy_module("comfy.model_management")
    patchers = [h.patcher for h in hosted if h.patcher is not None]
    if mm is not None and patchers:
        mm.load_models_gpu(patchers, memory_required=memory_required, force_full_load=True)
    for h in hosted:
        if h.patcher is None:
            h.module.to(h.load_device)
    return [h.module for h in hosted]


@dataclass(eq=False)
class LipSyncModelBundle:
    """What flows on a STYLELIPSYNC_MODELS socket."""

    motion: HostedModel
    renderer: HostedModel
    mouth: Any  # lipsync_core.motion.MouthModel
    vae: HostedModel | None = None
    files: dict[str, str] = field(default_factory=dict)

    def _models(self, motion: torch.nn.Module, renderer: torch.nn.Module, vae: torch.nn.Module | None):
        return core_module("models.bundle").LipSyncModels(motion=motion, renderer=renderer, mouth=self.mouth, vae=vae)

    def ready(self) -> Any:
        """lipsync_core.pipeline.LipSyncModels on the load device (call before each piece of work)."""
        hosted = [self.motion, self.renderer] + ([self.vae] if self.vae is not None else [])
        modules = ready_all(hosted)
        return self._models(modules[0], modules[1], modules[2] if self.vae is not None else None)

    def ready_motion(self) -> Any:
        """Only stage 1 loaded (for the motion nodes); the renderer stays where model management left it."""
        motion = ready_all([self.motion])[0]
        return self._models(motion, self.renderer.module, self.vae.module if self.vae is not None else None)

    @property
    def feature_spec(self) -> Any:
        return self._models(self.motion.module, self.renderer.module, None).feature_spec

    @property
    def renderer_config(self) -> Any:
        return self.renderer.module.config


def load_bundle(
    motion_model: str, renderer: str, mouth_model: str, vae: str = NO_VAE, cache: ModelCache = MODEL_CACHE
) -> LipSyncModelBundle:
    """Resolve and load (once per file version) the four files of a bundle."""
    paths = {
        "motion": model_file(motion_model, "motion", "motion_model"),
        "renderer": model_file(renderer, "renderer", "renderer"),
        "mouth_model": model_file(mouth_model, "mouth_model", "mouth_model"),
    }
    if vae != NO_VAE:
        paths["vae"] = model_file(vae, "vae", "vae")
    mouth_cls = core_module("motion").MouthModel
    bundle = LipSyncModelBundle(
        motion=_hosted(paths["motion"], "motion", cache),
        renderer=_hosted(paths["renderer"], "renderer", cache),
        mouth=cache.get(paths["mouth_model"], mouth_cls.load, kind="mouth_model"),
        vae=_hosted(paths["vae"], "vae", cache) if "vae" in paths else None,
        files={k: str(p) for k, p in paths.items()},
    )
    spec = bundle.feature_spec  # a motion file without a feature spec is refused here, not mid-render
    del spec
    # a renderer of another crop framing too (the loader's input name and file, not after the tracking)
    framing = bundle.renderer_config.crop_framing
    core_module("models.bundle").check_framing(framing, f"renderer {paths['renderer'].name}")
    return bundle


class ComfyVAECodec:
    """A ComfyUI VAE (``comfy.sd.VAE``) as a lipsync_core LatentCodec.

    ComfyUI's ``VAE.encode`` takes [B, H, W, C] pixels 0..1 and returns the raw latent; ``decode`` returns
    [B, H, W, C] pixels 0..1. The renderer's config says how its latents were scaled in training.
    """

    def __init__(self, vae: Any, scale: float, shift: float = 0.0) -> None:
        self.vae = vae
        self.scale = float(scale)
        self.shift = float(shift)
        self.latent_channels = int(getattr(vae, "latent_channels", 4))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        latents = self.vae.encode(images[..., :3])
        return (latents.float() - self.shift) * self.scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        pixels = self.vae.decode(latents.float() / self.scale + self.shift)
        if pixels.ndim == 5:  # video VAEs return [B, T, H, W, C]
            pixels = pixels.reshape(-1, *pixels.shape[-3:])
        return pixels[..., :3].float().clamp(0, 1)


def codec_for(bundle: LipSyncModelBundle, vae: Any | None) -> Any | None:
    """The codec a render uses: None (the renderer's own VAE) or the graph's ComfyUI VAE, checked."""
    if vae is None:
        return None
    cfg = bundle.renderer_config
    codec = ComfyVAECodec(vae, cfg.latent_scale, cfg.latent_shift)
    core_module("render.codec").check_codec(codec, cfg.latent_channels)
    ratio = getattr(vae, "downscale_ratio", None)
    if isinstance(ratio, int) and ratio > 0 and cfg.crop_size // ratio != cfg.latent_size:
        raise LipSyncInputError(
            f"vae: it downsamples by {ratio}, so a {cfg.crop_size}-px face crop gives a {cfg.crop_size // ratio}-px "
            f"latent, but the renderer works on {cfg.latent_size}-px latents; use the renderer's own VAE."
        )
    return codec
