"""Run by tests/e2e/test_host_glue.py in the host's Python, with ComfyUI importable: the glue on comfy's real code.

Loads the pack the way ComfyUI does (a package named after its folder), then exercises folder
registration (with an extra_model_paths entry already present), ModelPatcher load/offload,
ProgressBar and interruption, and every ComfyUI attention backend through our adapter.
Prints one JSON object of measurements; the test asserts on it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

comfy_path, pack_path, comfy_flags = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path.insert(0, comfy_path)
os.chdir(comfy_path)
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
sys.argv = [sys.argv[0], *comfy_flags]  # the host's launch flags, e.g. --cpu

import comfy.model_management as mm  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.utils  # noqa: E402
import folder_paths  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

out: dict = {}

# an extra_model_paths.yaml entry "stylelipsync: <dir>" is applied before custom nodes load
extra = Path(tempfile.mkdtemp(prefix="slsync-extra-"))
(extra / "a.safetensors").write_bytes(b"")
(extra / "notes.txt").write_text("not a model")
folder_paths.add_model_folder_path("stylelipsync", str(extra))

name = pack_path.replace(".", "_x_")
spec = importlib.util.spec_from_file_location(name, os.path.join(pack_path, "__init__.py"))
pack = importlib.util.module_from_spec(spec)
sys.modules[name] = pack
spec.loader.exec_module(pack)
import asyncio  # noqa: E402

extension = asyncio.run(pack.comfy_entrypoint())  # as ComfyUI calls it: the models folder joins here
out["extension_nodes"] = sorted(n.GET_SCHEMA().node_id for n in asyncio.run(extension.get_node_list()))
host = importlib.import_module(f"{name}.nodes.host")
hosted_model = progress = attention = host
sockets = importlib.import_module(f"{name}.nodes.sockets")
out["custom_types"] = sorted(sockets.CUSTOM_TYPES)

paths, exts = folder_paths.folder_names_and_paths["stylelipsync"]
out["folder_paths"] = paths
out["folder_extensions"] = sorted(exts)
out["listed"] = folder_paths.get_filename_list("stylelipsync")
out["node_ids"] = out["extension_nodes"]

# ModelPatcher: model management loads it, lists it, and frees it
module = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 8))
hosted = hosted_model.HostedModel(module, name="probe")
out["patcher_type"] = type(hosted.patcher).__module__ + "." + type(hosted.patcher).__name__
out["devices"] = [str(hosted.load_device), str(hosted.offload_device)]
ready = hosted.ready()
out["loaded_after_ready"] = hosted.is_loaded()
out["ready_is_module"] = ready is module
x = torch.randn(3, 64)
out["forward_ok"] = bool(torch.allclose(ready(x), module(x)))
out["patcher_size"] = hosted.patcher.model_size()
mm.unload_all_models()
out["loaded_after_unload_all"] = hosted.is_loaded()
hosted.ready()
out["loaded_after_ready_again"] = hosted.is_loaded()

# the model bundle: each file read once into a ModelPatcher that model management places
models_mod = importlib.import_module(f"{name}.nodes.models")
demo = models_mod.DEMO_CHOICE
first = models_mod.load_bundle(demo, demo, demo, demo)
second = models_mod.load_bundle(demo, demo, demo, demo)
out["loader_same_object"] = first.renderer is second.renderer and first.motion is second.motion
out["loader_loads"] = models_mod.MODEL_CACHE.loads(kind="renderer")
out["loader_patcher"] = type(first.renderer.patcher).__name__
out["loader_forward_ok"] = first.ready().renderer is first.renderer.module and first.renderer.is_loaded()

# fps from core VIDEO objects: a file (header only) and in-memory components
from fractions import Fraction  # noqa: E402

import av  # noqa: E402
from comfy_api.input_impl import VideoFromComponents, VideoFromFile  # noqa: E402
from comfy_api.util import VideoComponents  # noqa: E402

fps_mod = sockets
clip = extra / "clip.mp4"
with av.open(str(clip), "w") as container:
    stream = container.add_stream("libx264", rate=Fraction(25, 2))
    stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    for _ in range(4):
        container.mux(stream.encode(av.VideoFrame.from_ndarray(torch.zeros(32, 32, 3, dtype=torch.uint8).numpy())))
    container.mux(stream.encode())
out["fps_video_from_file"] = fps_mod.fps_of(VideoFromFile(str(clip)))
components = VideoComponents(images=torch.zeros(4, 32, 32, 3), audio=None, frame_rate=Fraction(30000, 1001))
out["fps_video_from_components"] = fps_mod.fps_of(VideoFromComponents(components))

# ProgressBar reaches ComfyUI's hook; interruption raises between chunks and then clears
calls = []
comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: calls.append((value, total)))
bar = progress.Progress(4)
bar.set(1)
bar.set(3, 4)
out["progress_calls"] = calls
mm.interrupt_current_processing(True)
try:
    bar.set(2)
    out["interrupt"] = "not raised"
except mm.InterruptProcessingException:
    out["interrupt"] = "raised"
progress.check_interrupted()  # the flag was consumed: a following prompt runs
out["interrupt_cleared"] = not mm.processing_interrupted()
comfy.utils.set_progress_bar_global_hook(None)

# every attention backend this ComfyUI has, through our adapter, against SDPA
import comfy.ldm.modules.attention as comfy_attention  # noqa: E402

torch.manual_seed(0)
q, k, v = torch.randn(2, 4, 9, 16), torch.randn(2, 4, 11, 16), torch.randn(2, 4, 11, 16)
keep = torch.rand(2, 1, 9, 11) > 0.3
keep[..., 0] = True
bias = torch.randn(9, 11)
backends = {"optimized_attention": comfy_attention.optimized_attention}
for fn_name in ("attention_basic", "attention_sub_quad", "attention_split", "attention_pytorch"):
    if hasattr(comfy_attention, fn_name):
        backends[fn_name] = getattr(comfy_attention, fn_name)
errors = {}
for label, fn in backends.items():
    adapted = attention.adapt_comfy_attention(fn)
    worst = 0.0
    for mask in (None, keep, bias):
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        got = adapted(q, k, v, attn_mask=mask)
        assert got.shape == ref.shape, (label, got.shape)
        worst = max(worst, float((got - ref).abs().max()))
    errors[label] = worst
out["attention_max_abs_error"] = errors
out["chosen_attention"] = comfy_attention.optimized_attention.__name__
with attention.comfy_attention_installed() as backend:
    out["installed_backend"] = backend
    core = importlib.import_module(f"{name}.lipsync_core.models.attention")
    out["core_has_hook"] = core is not None and hasattr(core, "set_attention_override")
    if out["core_has_hook"]:
        out["core_override_during"] = core.get_attention_override() is not None
        out["core_backend_during"] = core.current_backend("cpu")
        ours = core.attention(q, k, v, attn_mask=keep)
        out["core_error_during"] = float((ours - F.scaled_dot_product_attention(q, k, v, attn_mask=keep)).abs().max())
if out["core_has_hook"]:
    out["core_override_after"] = core.get_attention_override() is not None
shutil.rmtree(extra, ignore_errors=True)
print(json.dumps(out))
