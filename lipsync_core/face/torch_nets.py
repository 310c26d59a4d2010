"""MediaPipe's face networks in torch: BlazeFace (short and full range) and the 478-point attention mesh.

The weights and the layer graph come from ``data/<model>.safetensors`` (made once by
:mod:`.convert_tflite` from the TFLite files of the mediapipe 0.10.14 wheel, Apache-2.0). A
:class:`GraphNet` runs that graph op by op with torch: activations are NCHW, batched, on any device
and dtype. The layers are the few TFLite builtins these models use, written so they match TFLite's
arithmetic (SAME padding is asymmetric, channel padding in the skip branches), plus MediaPipe's three
custom ops of the attention mesh (:func:`landmarks_to_transform_matrix`,
:func:`transform_tensor_bilinear`, :func:`transform_landmarks`): the mesh crops its own lips and eye
regions from the 48x48 feature map and refines them.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open

DATA_DIR = Path(__file__).resolve().parent / "data"
FORMAT_VERSION = 1  # the one convert_tflite writes; a constant lives once, but this is the reader's check
NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)
# Images a network takes a call on a CPU: a larger batch's activations outgrow the caches and every call's
# fresh memory costs page faults (static mode at 512x512, 64 frames fed at once, by this constant: 8: 121,
# 16: 132, 32: 88, 64: 80 frames/s; benchmarks/bench_frontend.py)
CPU_BATCH = 16
# Above this many elements the layout workarounds below pay; under it (a tracked face, one image a call)
# their extra torch calls cost more than they save: the plain call is taken
LARGE_ACTIVATION = 1 << 18


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite SAME padding along one axis: the odd pixel goes after (torch pads symmetrically)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _activate(x: torch.Tensor, act: str | None, in_place: bool = False) -> torch.Tensor:
    """A fused activation; ``in_place`` when ``x`` is a fresh result nobody else holds."""
    if act == "relu":
        return F.relu_(x) if in_place else F.relu(x)
    if act == "relu6":
        return F.hardtanh_(x, 0.0, 6.0) if in_place else F.relu6(x)
    return x


def _pad_spatial(x: torch.Tensor, pw: tuple[int, int], ph: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    """``F.pad(x, (*pw, *ph), value=value)`` of an NCHW tensor, keeping its memory format.

    Writes the borders and copies the inside once: ``F.pad`` of a channels-last tensor fills the whole
    output before copying into it (two passes over the largest activations of the mesh).
    """
    if x.numel() < LARGE_ACTIVATION:
        return F.pad(x, (*pw, *ph), value=value)
    n, c, h, w = x.shape
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    out = torch.empty((n, c, h + ph[0] + ph[1], w + pw[0] + pw[1]), dtype=x.dtype, device=x.device,
                      memory_format=fmt)
    out[:, :, : ph[0]] = value
    out[:, :, h + ph[0] :] = value
    out[:, :, ph[0] : h + ph[0], : pw[0]] = value
    out[:, :, ph[0] : h + ph[0], w + pw[0] :] = value
    out[:, :, ph[0] : h + ph[0], pw[0] : w + pw[0]] = x
    return out


def _prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PReLU with one slope per channel; a channels-last tensor goes through as its (N*H*W, C) matrix,
    where torch's kernel is several times faster than on the 4-D channels-last layout (16 channels)."""
    if x.dim() == 4 and x.numel() >= LARGE_ACTIVATION and x.is_contiguous(memory_format=torch.channels_last):
        n, c, h, w = x.shape
        return F.prelu(x.permute(NCHW_TO_NHWC).reshape(n * h * w, c), weight.reshape(c)).view(
            n, h, w, c).permute(NHWC_TO_NCHW)
    return F.prelu(x, weight)


def landmarks_to_transform_matrix(landmarks: torch.Tensor, options: dict) -> torch.Tensor:
    """MediaPipe ``Landmarks2TransformMatrix`` v2: (B, N, 3) landmarks -> (B, 4, 4) crop matrices.

    The crop is the subset's bounding box in a frame rotated so the two rotation landmarks lie on
    ``target_rotation_radians``, scaled by ``scale_x/y`` and mapped onto an output_width x output_height grid.
    """
    left = landmarks[:, options["left_rotation_idx"], :2]
    right = landmarks[:, options["right_rotation_idx"], :2]
    rotation = options.get("target_rotation_radians", 0.0) - torch.atan2(
        right[:, 1] - left[:, 1], right[:, 0] - left[:, 0]
    )
    subset = landmarks[:, options["subset_idxs"], :2]
    cos, sin = torch.cos(rotation)[:, None], torch.sin(rotation)[:, None]
    x = cos * subset[..., 0] - sin * subset[..., 1]
    y = sin * subset[..., 0] + cos * subset[..., 1]
    x_min, x_max = x.amin(1), x.amax(1)
    y_min, y_max = y.amin(1), y.amax(1)
    mid_x, mid_y = (x_min + x_max) / 2, (y_min + y_max) / 2
    c, s = cos[:, 0], sin[:, 0]
    centre_x, centre_y = c * mid_x + s * mid_y, -s * mid_x + c * mid_y  # rotate back by -rotation
    out_w, out_h = options["output_width"], options["output_height"]
    scale_x = options["scale_x"] * (x_max - x_min) / out_w
    scale_y = options["scale_y"] * (y_max - y_min) / out_h
    # t = shift(centre) @ rotate(-rotation) @ scale @ shift(-out/2)
    cr, sr = c, -s  # cos(-rotation), sin(-rotation)... rotation matrix of angle -rotation
    m = torch.zeros(landmarks.shape[0], 4, 4, dtype=landmarks.dtype, device=landmarks.device)
    m[:, 0, 0], m[:, 0, 1] = cr * scale_x, -sr * scale_y
    m[:, 1, 0], m[:, 1, 1] = sr * scale_x, cr * scale_y
    m[:, 0, 3] = centre_x - (cr * scale_x * out_w / 2 - sr * scale_y * out_h / 2)
    m[:, 1, 3] = centre_y - (sr * scale_x * out_w / 2 + cr * scale_y * out_h / 2)
    m[:, 2, 2] = 1.0
    m[:, 3, 3] = 1.0
    return m


@cache
def _pixel_centres(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(2, H*W): the x + 0.5 and y + 0.5 of an output grid's pixels, row-major: made once per grid size."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype), torch.arange(width, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([xs.flatten(), ys.flatten()]) + 0.5


def transform_tensor_bilinear(features: torch.Tensor, matrix: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """MediaPipe ``TransformTensorBilinear`` v2: sample (B, C, H, W) at matrix @ (x+0.5, y+0.5) - 0.5.

    A sample whose centre falls outside [0, W-1] x [0, H-1] is zero (not a partial blend). Both source
    coordinates are computed at once, element-wise in the same order as one at a time (bit for bit).
    """
    b, _, h, w = features.shape
    oh, ow = out_hw
    xs, ys = _pixel_centres(oh, ow, matrix.device, matrix.dtype)
    rows = matrix[:, :2, :, None]  # (B, 2, 4, 1): the x and y rows of the 4x4
    source = rows[:, :, 0] * xs + rows[:, :, 1] * ys + rows[:, :, 3] - 0.5  # (B, 2, H*W)
    tx, ty = source[:, 0].view(b, oh, ow), source[:, 1].view(b, oh, ow)
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    grid = torch.stack([tx * (2.0 / (w - 1)) - 1.0, ty * (2.0 / (h - 1)) - 1.0], dim=-1)
    out = F.grid_sample(features, grid.to(features.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
    return (out * inside[:, None].to(out.dtype)).contiguous(memory_format=torch.channels_last)


def transform_landmarks(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """MediaPipe ``TransformLandmarks`` v2: (B, N, 2) points through the matrix's first two rows."""
    x, y = points[..., 0], points[..., 1]
    out_x = matrix[:, 0, 0, None] * x + matrix[:, 0, 1, None] * y + matrix[:, 0, 3, None]
    out_y = matrix[:, 1, 0, None] * x + matrix[:, 1, 1, None] * y + matrix[:, 1, 3, None]
    return torch.stack([out_x, out_y], dim=-1)


class GraphNet(torch.nn.Module):
    """One converted TFLite graph: ``forward(images)`` with images (B, 3, S, S) -> the graph's outputs.

    Constants are buffers (so ``.to(device, dtype)`` moves them); 4-D activations are NCHW and the
    ops that name an axis or a flat layout (pad, concat, reshape, slice) translate from TFLite's NHWC.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            if int(meta.get("format_version", -1)) != FORMAT_VERSION:
                raise ValueError(f"{path}: format_version {meta.get('format_version')} != {FORMAT_VERSION}")
            self.config = json.loads(meta["config"])
            self.graph = json.loads(meta["graph"])
            self._names = {}
            self._traced = None  # a TorchScript trace of this graph (CPU fp32), see load_cpu_net
            self.trace_after_frames: int | None = None  # trace on the CPU once this many frames went through
            self._frames_seen = 0
            for i, key in enumerate(f.keys()):
                self._names[key] = f"w{i}"
                self.register_buffer(f"w{i}", f.get_tensor(key).float(), persistent=False)
        self._owned, self._slice_adds = self._plan_in_place()
        self._dead_after = self._plan_lifetimes()
        self._same = self._plan_same_padding()
        # 1x1 convolutions run as matrix products: their (C_in, C_out) weight views, made once
        self._pointwise: dict[str, str] = {}
        for op in self.graph:
            if op["op"] == "conv" and op["groups"] == 1 and op["stride"] == [1, 1]:
                weight = self._const(op["weight"])
                if weight.shape[2:] == (1, 1):
                    key = self._pointwise[op["out"]] = f"{self._names[op['weight']]}_mm"
                    self.register_buffer(key, weight[:, :, 0, 0].t(), persistent=False)

    def _plan_in_place(self) -> tuple[set[str], dict[str, str]]:
        """Which activations an op may overwrite, and which channel pads fold into the add after them.

        The graphs are chains of small memory-bound ops (add, relu, zero channel padding of the skip
        branch) between convolutions; on a CPU, allocating and filling their outputs costs as much as the
        convolutions. An op's output is *owned* by its single consumer (not the input, not a constant, not
        a graph output), which may then write in place. A ``pad`` that only appends zero channels and
        feeds one ``add`` whose other input is owned becomes ``other[:, :C] += x``: the same sums, bit for
        bit (adding zero changes nothing), with no padded copy.
        """
        uses: dict[str, int] = {}
        for op in self.graph:
            for name in op["in"]:
                uses[name] = uses.get(name, 0) + 1
        # ops whose output is new storage (or, written in place, storage its input's one consumer gave up);
        # reshape and slice return views of tensors others may still read
        fresh = {"conv", "add", "relu", "prelu", "mul", "max_pool_2d", "concatenation", "resize_bilinear"}
        keep = set(self.config["outputs"]) | set(self.config["inputs"])
        owned = {
            op["out"]
            for op in self.graph
            if op["op"] in fresh and uses.get(op["out"], 0) == 1 and op["out"] not in keep
        }
        pads = {
            op["out"]: op
            for op in self.graph
            if op["op"] == "pad" and uses.get(op["out"], 0) == 1 and all(p == [0, 0] for p in op["pads"][:3])
            and op["pads"][3][0] == 0
        }
        slice_adds = {}
        for op in self.graph:
            if op["op"] == "add" and len(op["in"]) == 2:
                a, b = op["in"]
                for padded, other in ((a, b), (b, a)):
                    if padded in pads and other in owned:
                        slice_adds[padded] = pads[padded]["in"][0]
        return owned, slice_adds

    def _plan_same_padding(self) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
        """Each SAME convolution's and pooling's (width, height) pads, from the sizes the graph records.

        The input size is fixed, so they are worked out once here: computed in the call from ``x.shape``, a
        TorchScript trace recorded them as a few hundred integer ops that it then ran at every call.
        """
        size = self.config["input_size"]
        spatial = {self.config["inputs"][0]: (size, size)}
        spatial.update({op["out"]: tuple(op["shape"][1:3]) for op in self.graph if len(op["shape"]) == 4})
        pads = {}
        for op in self.graph:
            if op["op"] in ("conv", "max_pool_2d") and op["same"]:
                kernel = self._const(op["weight"]).shape[2:] if op["op"] == "conv" else op["kernel"]
                dilation = op.get("dilation", [1, 1])
                h, w = spatial[op["in"][0]]
                pads[op["out"]] = (
                    _same_pads(w, kernel[1], op["stride"][1], dilation[1]),
                    _same_pads(h, kernel[0], op["stride"][0], dilation[0]),
                )
        return pads

    def _plan_lifetimes(self) -> list[list[str]]:
        """Per op, the activations that no later op reads, dropped once it has run.

        Holding every activation to the end of a call (the op loop's first form) made each op write to
        memory nothing had touched before: fresh pages from the OS (page faults) and cold caches. At batch
        16 that made the mesh 1.4x slower than its TorchScript trace, which frees values as it goes.
        """
        last: dict[str, int] = {}
        for index, op in enumerate(self.graph):
            for name in op["in"]:
                last[self._slice_adds.get(name, name)] = index  # a folded pad is read as its input
            last.setdefault(op["out"], index)  # an activation nobody reads is dropped at once
        keep = set(self.config["outputs"]) | set(self._names)
        dead: list[list[str]] = [[] for _ in self.graph]
        for name, index in last.items():
            if name not in keep:
                dead[index].append(name)
        return dead

    def _trace(self) -> None:
        """Trace this graph (CPU, fp32) with TorchScript; when tracing is unavailable or fails (``torch.jit``
        is deprecated in recent torch), the identical eager graph goes on running."""
        import warnings

        size = self.config["input_size"]
        self.trace_after_frames = None  # one try; and the trace below runs the op loop
        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")  # TracerWarning on shape arithmetic, DeprecationWarning of torch.jit
                # traced, not also frozen: freezing cost more time at load (about 1.4 s for the mesh, session 5)
                # than it saved in a whole video's calls
                self._traced = torch.jit.trace(self, torch.zeros(1, 3, size, size), check_trace=False)
        except Exception:  # any tracing failure leaves the eager graph
            self._traced = None

    def _run_traced(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The trace, run without TorchScript's profiling executor: its two profiled first calls took about
        0.5 s for the mesh and its optimised graph is no faster on a CPU (the flag is per thread, and restored)."""
        with torch.jit.optimized_execution(False):
            return list(self._traced(images))

    def _const(self, name: str) -> torch.Tensor | None:
        key = self._names.get(name)
        return None if key is None else self._buffers[key]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        cpu_fp32 = images.device.type == "cpu" and images.dtype == torch.float32
        if cpu_fp32 and self.trace_after_frames is not None:
            self._frames_seen += images.shape[0]
            if self._frames_seen > self.trace_after_frames:
                self._trace()
        run = self._run_traced if cpu_fp32 and self._traced is not None else self._run
        step = CPU_BATCH if images.device.type == "cpu" else images.shape[0]
        if images.shape[0] <= step:
            return run(images)
        parts = [run(images[start : start + step]) for start in range(0, images.shape[0], step)]
        return [torch.cat(outputs) for outputs in zip(*parts, strict=True)]

    def _run(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The graph, op by op."""
        if images.device.type == "cpu":  # oneDNN's depthwise convolutions are several times faster in NHWC
            images = images.contiguous(memory_format=torch.channels_last)
        values: dict[str, torch.Tensor] = {self.config["inputs"][0]: images}

        def get(name: str) -> torch.Tensor:
            if name in values:
                return values[name]
            return self._const(name)

        dead: list[str] = []
        for op, dead_next in zip(self.graph, self._dead_after, strict=True):
            for name in dead:  # the previous op's last reads
                values.pop(name, None)
            dead = dead_next
            kind = op["op"]
            x = get(op["in"][0])
            if kind == "conv":
                w = self._const(op["weight"])
                b = None if op["bias"] is None else self._const(op["bias"])
                if op["out"] in self._pointwise:
                    # pointwise: a matrix product over the channels (NHWC view), faster than conv2d on CPU;
                    # the bias added afterwards (addmm's broadcast copy of it is slow for 16-32 channels)
                    n, c, h, wd = x.shape
                    matrix = self._buffers[self._pointwise[op["out"]]]
                    y = torch.mm(x.permute(NCHW_TO_NHWC).reshape(n * h * wd, c), matrix)
                    if b is not None:
                        y.add_(b)
                    y = y.view(n, h, wd, -1).permute(NHWC_TO_NCHW)
                    values[op["out"]] = _activate(y, op["act"], in_place=True)
                    continue
                if op["same"]:
                    pw, ph = self._same[op["out"]]
                    if ph[0] == ph[1] and pw[0] == pw[1]:
                        y = F.conv2d(x, w, b, op["stride"], (ph[0], pw[0]), op["dilation"], op["groups"])
                    else:
                        y = F.conv2d(_pad_spatial(x, pw, ph), w, b, op["stride"], 0, op["dilation"], op["groups"])
                else:
                    y = F.conv2d(x, w, b, op["stride"], 0, op["dilation"], op["groups"])
                y = _activate(y, op["act"], in_place=True)
            elif kind == "prelu":
                y = _prelu(x, self._const(op["weight"]))
            elif kind == "relu":
                y = F.relu_(x) if op["in"][0] in self._owned else F.relu(x)
            elif kind == "add":
                a_name, b_name = op["in"]
                if a_name in self._slice_adds or b_name in self._slice_adds:
                    padded, other = (a_name, b_name) if a_name in self._slice_adds else (b_name, a_name)
                    y = get(other)
                    unpadded = get(self._slice_adds[padded])
                    y[:, : unpadded.shape[1]] += unpadded
                else:
                    other = get(b_name)
                    if a_name in self._owned and x.shape == other.shape:
                        y = x.add_(other)
                    elif b_name in self._owned and x.shape == other.shape:
                        y = other.add_(x)
                    else:
                        y = x + other
                y = _activate(y, op["act"], in_place=True)
            elif kind == "mul":
                y = _activate(x * get(op["in"][1]), op["act"])
            elif kind == "max_pool_2d":
                kh, kw = op["kernel"]
                if op["same"]:
                    pw, ph = self._same[op["out"]]
                    if any(ph) or any(pw):
                        x = _pad_spatial(x, pw, ph, float("-inf"))
                y = F.max_pool2d(x, (kh, kw), op["stride"])
            elif kind == "pad":
                if op["out"] in self._slice_adds:  # folded into the add that consumes it
                    continue
                pads = op["pads"]
                nhwc = x.dim() == 4  # pad in TFLite's layout (a view of channels-last memory), then back
                if nhwc:
                    x = x.permute(NCHW_TO_NHWC)
                y = F.pad(x, [p for axis in reversed(range(x.dim())) for p in pads[axis]])
                if nhwc:
                    y = y.permute(NHWC_TO_NCHW)
            elif kind == "concatenation":
                parts = [get(n) for n in op["in"]]
                axis = op["axis"] % parts[0].dim()
                if parts[0].dim() == 4:
                    axis = NHWC_TO_NCHW.index(axis)
                y = _activate(torch.cat(parts, dim=axis), op["act"])
            elif kind == "reshape":
                if x.dim() == 4:
                    x = x.permute(NCHW_TO_NHWC)
                y = x.reshape(x.shape[0], *op["shape"][1:])
                if y.dim() == 4:
                    y = y.permute(NHWC_TO_NCHW)
            elif kind == "strided_slice":
                nhwc = x.dim() == 4
                if nhwc:
                    x = x.permute(NCHW_TO_NHWC)
                bounds = zip(op["begin"][1:], op["end"][1:], op["strides"][1:], strict=True)
                index = [slice(None)] + [slice(bgn, end, step) for bgn, end, step in bounds]
                y = x[tuple(index)]
                if nhwc:
                    y = y.permute(NHWC_TO_NCHW)
            elif kind == "resize_bilinear":
                size = op["shape"][1:3]
                if op["align_corners"]:
                    y = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
                elif op["half_pixel"]:
                    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                else:
                    y = _resize_legacy(x, size)
            elif kind == "depth_to_space":
                # TFLite (and TF) DEPTH_TO_SPACE is DCR: channel index = (by * block + bx) * C + c
                b, c, h, w = x.shape
                k = op["block"]
                y = x.view(b, k, k, c // (k * k), h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, c // (k * k), h * k, w * k)
            elif kind == "Landmarks2TransformMatrix":
                y = landmarks_to_transform_matrix(x, op["options"])
            elif kind == "TransformTensorBilinear":
                y = transform_tensor_bilinear(x, get(op["in"][1]), tuple(op["shape"][1:3]))
            elif kind == "TransformLandmarks":
                y = transform_landmarks(x, get(op["in"][1]))
            else:
                raise NotImplementedError(kind)
            values[op["out"]] = y
        return [values[name] for name in self.config["outputs"]]


def _resize_legacy(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """TFLite RESIZE_BILINEAR without align_corners / half_pixel_centers: src = dst * in / out."""
    h, w = x.shape[2:]
    oh, ow = size
    ys = torch.arange(oh, device=x.device, dtype=torch.float32) * (h / oh)
    xs = torch.arange(ow, device=x.device, dtype=torch.float32) * (w / ow)
    y0 = ys.floor().long().clamp(max=h - 1)
    x0 = xs.floor().long().clamp(max=w - 1)
    y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
    fy = (ys - y0).to(x.dtype)[:, None]
    fx = (xs - x0).to(x.dtype)[None, :]
    top = x[:, :, y0][..., x0] * (1 - fx) + x[:, :, y0][..., x1] * fx
    bottom = x[:, :, y1][..., x0] * (1 - fx) + x[:, :, y1][..., x1] * fx
    return top * (1 - fy) + bottom * fy


@cache
def load_net(name: str) -> GraphNet:
    """The converted network ``name`` (face_detector_short, face_detector_full, face_mesh_attention), fp32 on CPU."""
    return GraphNet(DATA_DIR / f"{name}.safetensors").eval()


@cache
def load_cpu_net(name: str, trace_after_frames: int | None = None) -> GraphNet:
    """:func:`load_net`'s graph for a caller on the CPU, traced by TorchScript once ``trace_after_frames``
    frames have gone through it (None: never).

    The mesh runs frame after frame in tracking mode, a few hundred small ops a call: the traced graph
    dispatches them from C++ (about 1.3x faster here than the Python loop), but tracing costs about 0.6 s,
    so a short clip is done before a trace would pay off (see ``MESH_TRACE_AFTER_FRAMES``). The detector
    runs batched, a few calls a video: its Python loop costs nothing worth tracing.
    """
    net = GraphNet(DATA_DIR / f"{name}.safetensors").eval()
    net.trace_after_frames = trace_after_frames
    return net


def ssd_anchors(input_size: int, strides: list[int], anchors_per_cell: list[int]) -> torch.Tensor:
    """SSD anchor centres (A, 2) in 0..1, as MediaPipe's SsdAnchorsCalculator orders them (fixed size 1x1).

    Consecutive layers with one stride share a grid; ``anchors_per_cell`` is that grid's count.
    """
    centres = []
    grids = []
    for s in strides:
        if not grids or grids[-1] != s:
            grids.append(s)
    for stride, per_cell in zip(grids, anchors_per_cell, strict=True):
        n = math.ceil(input_size / stride)
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        c = torch.stack([(xs + 0.5) / n, (ys + 0.5) / n], dim=-1).reshape(-1, 1, 2)
        centres.append(c.expand(-1, per_cell, 2).reshape(-1, 2))
    return torch.cat(centres).float()
