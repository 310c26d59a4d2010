"""Models and caches: the STYLELIPSYNC_MODELS bundle loaded once per file version, ComfyUI VAEs as codecs,
what a weights file holds (Model Info), and the all-in-one node's memory of its work before rendering.

Stage 1 (motion), stage 2 (renderer) and the renderer's own VAE are torch modules held as
:class:`~.host.HostedModel` (ComfyUI's model management moves and offloads them); the mouth model is a
small numpy linear map. Each file is picked from ``models/stylelipsync`` or the weights shipped with the
pack (``lipsync_core/assets/demo_models``).
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from ..lipsync_core import weights
from ..lipsync_core.types import DEMO_MODELS, MODEL_FILES, FeatureSpec, LipSyncInputError
from .host import HostedModel, ready_all, resolve_model_path

if TYPE_CHECKING:  # the core's networks and mouth model are imported when first used: a missing optional
    # package then fails the node that needs it, never the pack's import
    from ..lipsync_core.models.bundle import LipSyncModels
    from ..lipsync_core.motion import MouthModel

DEMO_CHOICE = "demo (shipped)"
NO_VAE = "(none: connect a VAE to the render node)"
DEMO_FOLDER = DEMO_MODELS  # a name of this module: tests point it elsewhere

T = TypeVar("T")
FileKey = tuple[str, int, int]


def file_key(path: str | os.PathLike) -> FileKey:
    """(resolved path, mtime in ns, size in bytes): what identifies one version of a file."""
    resolved = Path(path).resolve()
    try:
        st = resolved.stat()
    except OSError as exc:
        raise LipSyncInputError(f"model: cannot read '{path}' ({exc.strerror}); check the file.") from exc
    return (str(resolved), st.st_mtime_ns, st.st_size)


class ModelCache:
    """Thread-safe map (kind, path, mtime, size) -> loaded object, with load counters.

    A file is loaded once per version: running a graph twice reuses the models, and replacing a file on
    disk reloads it (the stale entry is dropped). ``loads`` counts real loads, so a test or a user
    (GET /stylelipsync/cache) can see that a second run read no model file.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, FileKey], Any] = {}
        self._lock = threading.RLock()
        self._loads: Counter[tuple[str, str]] = Counter()

    def get(self, path: str | os.PathLike, loader: Callable[[Path], T], kind: str = "model") -> T:
        """The object ``loader(path)`` built for this version of the file, building it on first use."""
        key = file_key(path)
        with self._lock:
            entry_key = (kind, key)
            if entry_key in self._entries:
                return self._entries[entry_key]
            for stale in [k for k in self._entries if k[0] == kind and k[1][0] == key[0]]:
                del self._entries[stale]
            value = loader(Path(key[0]))
            self._entries[entry_key] = value
            self._loads[(kind, key[0])] += 1
            return value

    def loads(self, path: str | os.PathLike | None = None, kind: str | None = None) -> int:
        """How many times files were really loaded (optionally for one path and/or kind)."""
        resolved = str(Path(path).resolve()) if path is not None else None
        with self._lock:
            return sum(n for (k, p), n in self._loads.items()
                       if (kind is None or k == kind) and (resolved is None or p == resolved))  # fmt: skip

    def evict(self, path: str | os.PathLike | None = None) -> int:
        """Drop entries (all, or those of one path); returns how many were dropped."""
        resolved = str(Path(path).resolve()) if path is not None else None
        with self._lock:
            doomed = [k for k in self._entries if resolved is None or k[1][0] == resolved]
            for k in doomed:
                del self._entries[k]
            return len(doomed)

    def stats(self) -> dict[str, Any]:
        """Entries and load counts, for logs and tests."""
        with self._lock:
            return {"entries": len(self._entries),
                    "loads": {f"{kind}:{path}": n for (kind, path), n in sorted(self._loads.items())}}  # fmt: skip

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


MODEL_CACHE = ModelCache()
"""The pack-wide cache: every node loads models through this one instance."""


# ----------------------------------------------------------------------------- the bundle


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
    from ..lipsync_core.models import load_model

    return cache.get(path, lambda resolved: HostedModel(load_model(resolved, kind, "cpu"),
                                                        name=f"{kind}:{resolved.name}"), kind=kind)


@dataclass(eq=False)
class LipSyncModelBundle:
    """What flows on a STYLELIPSYNC_MODELS socket: the models, placed by ComfyUI's model management."""

    motion: HostedModel
    renderer: HostedModel
    mouth: MouthModel
    vae: HostedModel | None = None
    files: dict[str, str] = field(default_factory=dict)

    def _models(self, modules: list[torch.nn.Module]) -> LipSyncModels:
        from ..lipsync_core.models.bundle import LipSyncModels

        return LipSyncModels(motion=modules[0], renderer=modules[1], mouth=self.mouth,
                             vae=modules[2] if self.vae is not None else None)

    def ready(self) -> LipSyncModels:
        """The core's models on the load device (call before each piece of work)."""
        return self._models(ready_all([self.motion, self.renderer] + ([self.vae] if self.vae is not None else [])))

    def ready_motion(self) -> LipSyncModels:
        """Only stage 1 loaded (for the motion nodes); the renderer stays where model management left it."""
        return self._models([ready_all([self.motion])[0], self.renderer.module]
                            + ([self.vae.module] if self.vae is not None else []))

    @property
    def feature_spec(self) -> FeatureSpec:
        return self._models([self.motion.module, self.renderer.module, None]).feature_spec

    @property
    def renderer_config(self) -> Any:
        return self.renderer.module.config


def load_bundle(motion_model: str, renderer: str, mouth_model: str, vae: str = NO_VAE,
                cache: ModelCache = MODEL_CACHE) -> LipSyncModelBundle:
    """Resolve and load (once per file version) the files of a bundle; refused at once when they do not fit."""
    from ..lipsync_core.models.bundle import check_framing
    from ..lipsync_core.motion import MouthModel

    paths = {
        "motion": model_file(motion_model, "motion", "motion_model"),
        "renderer": model_file(renderer, "renderer", "renderer"),
        "mouth_model": model_file(mouth_model, "mouth_model", "mouth_model"),
    }
    if vae != NO_VAE:
        paths["vae"] = model_file(vae, "vae", "vae")
    bundle = LipSyncModelBundle(
        motion=_hosted(paths["motion"], "motion", cache),
        renderer=_hosted(paths["renderer"], "renderer", cache),
        mouth=cache.get(paths["mouth_model"], MouthModel.load, kind="mouth_model"),
        vae=_hosted(paths["vae"], "vae", cache) if "vae" in paths else None,
        files={k: str(p) for k, p in paths.items()},
    )
    bundle.feature_spec  # noqa: B018 - a motion file without a feature spec is refused here, not mid-render
    # a renderer of another crop framing too (the loader's input name and file, not after the tracking)
    check_framing(bundle.renderer_config.crop_framing, f"renderer {paths['renderer'].name}")
    return bundle


def bundle_fingerprint(motion_model: str, renderer: str, mouth_model: str, vae: str = NO_VAE) -> str:
    """What identifies the files a loader picks (path, mtime, size each): a replaced file reloads."""
    keys = []
    for choice, kind, name in ((motion_model, "motion", "motion_model"), (renderer, "renderer", "renderer"),
                               (mouth_model, "mouth_model", "mouth_model"), (vae, "vae", "vae")):  # fmt: skip
        try:
            keys.append(file_key(model_file(choice, kind, name)) if choice != NO_VAE else None)
        except Exception:  # noqa: BLE001 - the run reports the real problem
            keys.append(choice)
    return json.dumps(keys)


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


def codec_for(bundle: LipSyncModelBundle, vae: Any | None) -> ComfyVAECodec | None:  # vae: comfy.sd.VAE
    """The codec a render uses: None (the renderer's own VAE) or the graph's ComfyUI VAE, checked."""
    if vae is None:
        return None
    cfg = bundle.renderer_config
    codec = ComfyVAECodec(vae, cfg.latent_scale, cfg.latent_shift)
    bundle._models([bundle.motion.module, bundle.renderer.module, None]).codec(codec)  # latent channels checked
    ratio = getattr(vae, "downscale_ratio", None)
    if isinstance(ratio, int) and ratio > 0 and cfg.crop_size // ratio != cfg.latent_size:
        raise LipSyncInputError(
            f"vae: it downsamples by {ratio}, so a {cfg.crop_size}-px face crop gives a {cfg.crop_size // ratio}-px "
            f"latent, but the renderer works on {cfg.latent_size}-px latents; use the renderer's own VAE."
        )
    return codec


# ----------------------------------------------------------------------------- what a file holds

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_MAX_HEADER = 100 * 1024 * 1024


def inspect_weights_file(path: str | os.PathLike) -> dict[str, Any]:
    """Header facts and problems of one safetensors file (no tensor data read): kind, version, config,
    tensors, parameters, bytes; and what a load would trip over (not ours, unknown version, truncated)."""
    path = Path(path)
    info: dict[str, Any] = {"file": path.name, "path": str(path), "problems": []}
    problems: list[str] = info["problems"]
    size = path.stat().st_size
    info["file_bytes"] = size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            problems.append("shorter than a safetensors header; re-copy it")
            return info
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, _MAX_HEADER):
            problems.append("header length is impossible: not a safetensors file, or truncated")
            return info
        try:
            header = json.loads(f.read(header_len))
        except ValueError:
            problems.append("header is not JSON: not a safetensors file")
            return info
    meta = header.pop("__metadata__", None) or {}
    params = data_end = 0
    dtypes: set[str] = set()
    for name, spec in header.items():
        try:
            shape, (start, end), dtype = spec["shape"], spec["data_offsets"], spec["dtype"]
        except (KeyError, TypeError, ValueError):
            problems.append(f"tensor '{name}' has a malformed header entry")
            continue
        count = 1
        for dim in shape:
            count *= int(dim)
        params += count
        data_end = max(data_end, int(end))
        dtypes.add(dtype)
        if dtype in _DTYPE_BYTES and int(end) - int(start) != count * _DTYPE_BYTES[dtype]:
            problems.append(f"tensor '{name}' size does not match its shape")
    info.update(tensors=len(header), parameters=params, dtypes=sorted(dtypes))
    if 8 + header_len + data_end > size:
        problems.append(f"truncated: {8 + header_len + data_end - size} bytes missing; re-copy it")
    kind = meta.get(weights.KIND_KEY)
    info["kind"] = kind
    if kind is None:
        problems.append("not a StyleLipSync weights file (no kind in its metadata)")
        return info
    try:
        info["format_version"] = int(meta.get(weights.VERSION_KEY, "0"))
        info["config"] = json.loads(meta.get(weights.CONFIG_KEY, "{}"))
        info["extra"] = json.loads(meta.get(weights.EXTRA_KEY, "{}"))
    except ValueError:
        problems.append("metadata is corrupted (config is not JSON)")
    return info


def describe_weights(info: dict[str, Any]) -> str:
    """One readable paragraph of :func:`inspect_weights_file`'s facts."""
    status = "OK" if not info["problems"] else "PROBLEM: " + "; ".join(info["problems"])
    name = f"{DEMO_CHOICE}: {info['file']}" if info.get("shipped") else info["file"]
    parts = [f"{name}: {status}"]
    if info.get("kind") is not None:
        parts.append(f"  kind {info['kind']} v{info.get('format_version', '?')}")
    if "parameters" in info:
        parts.append(f"  {info['tensors']} tensors, {info['parameters']:,} parameters "
                     f"({'/'.join(info['dtypes']) or '-'}), {info['file_bytes'] / 1e6:.2f} MB")  # fmt: skip
    config = info.get("config")
    if isinstance(config, dict) and config:
        parts.append("  config: " + json.dumps(config, sort_keys=True)[:400])
    return "\n".join(parts)


# ----------------------------------------------------------------------------- work kept across runs


def _tensor_state(value: Any) -> tuple:
    """What tells a tensor changed in place: its version counter (inference tensors, which ComfyUI's nodes make
    under inference mode, have none), its storage and its shape; nothing for other objects."""
    if not isinstance(value, torch.Tensor):
        return ()
    version = None if value.is_inference() else value._version
    return (version, value.data_ptr(), tuple(value.shape))


class RunMemo:
    """The last few results of a node's work before rendering, kept while its inputs are the same objects.

    ComfyUI hands a node the very same objects on a second run when the nodes upstream did not run again
    (its own cache), so identity (and, for tensors, :func:`_tensor_state`) tells an unchanged input; the memo
    holds the inputs too, so an id cannot be reused while an entry lives. A changed seed, sampler or step count
    is left out of the key by the caller: only the render runs again.
    """

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._entries: OrderedDict[tuple, tuple[list[Any], Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def _key(values: dict[str, Any]) -> tuple[tuple, list[Any]]:
        parts, held = [], []
        for name, value in sorted(values.items()):
            if value is None or isinstance(value, str | int | float | bool):
                parts.append((name, value))
            else:
                parts.append((name, id(value), *_tensor_state(value)))
                held.append(value)
        return tuple(parts), held

    def get(self, values: dict[str, Any], compute: Callable[[], T]) -> T:
        """``compute()``'s result for these inputs, computed only when they changed."""
        key, held = self._key(values)
        with self._lock:
            if key in self._entries:
                self.hits += 1
                self._entries.move_to_end(key)
                return self._entries[key][1]
        result = compute()
        with self._lock:
            self.misses += 1
            self._entries[key] = (held, result)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return result

    def results(self) -> list[Any]:
        """The kept results, oldest first."""
        with self._lock:
            return [result for _held, result in self._entries.values()]


PREPARED = RunMemo()
"""The all-in-one node's tracking, analysis, length match and stage-1 results of its latest runs, each with
the render's seed-independent work (a lipsync_core RenderCache, at most RENDER_CACHE_MB each)."""


def render_reuse() -> dict[str, int]:
    """The all-in-one node's render caches together: blocks reused (hits), computed (misses), not kept (over
    the bound) and bytes held."""
    total = {"hits": 0, "misses": 0, "over_budget": 0, "bytes": 0}
    for result in PREPARED.results():
        stats = result[-1].stats()
        for key in total:
            total[key] += stats[key]
    return total

