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


# Ops that run unchanged on lanes laid side by side along the channels (see fuse_twin_branches)
LANE_OPS = {"conv", "prelu", "add", "relu", "max_pool_2d", "pad"}


def _appends_zero_channels(op: dict) -> bool:
    """Is ``op`` a pad that only appends zero channels (the channel padding of a skip branch)?"""
    return op["op"] == "pad" and all(p == [0, 0] for p in op["pads"][:3]) and op["pads"][3][0] == 0


def _lane_op(op: dict) -> bool:
    """Can ``op`` run on k lanes concatenated along the channels, one op for all (4-D, per channel or grouped)?"""
    if op["op"] not in LANE_OPS or len(op["shape"]) != 4:
        return False
    return op["op"] != "pad" or _appends_zero_channels(op)


def fuse_twin_branches(
    graph: list[dict], consts: dict[str, torch.Tensor], outputs: set[str]
) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Run k identical branches of a graph as one branch k times as wide: fewer, larger ops.

    The attention mesh crops its left and right eye from one feature map and refines each with its own copy of
    one sub-network (86 convolutions, PReLUs, adds, pools and pads each): same layers, same sizes, other
    weights. Laid side by side along the channels (lane i = channels [i*C, (i+1)*C)), each layer of the pair is
    one op: a convolution with the weights concatenated and k times the groups, PReLU with the slopes
    concatenated, element-wise ops as they are, a channel pad per lane. Tracking runs one image a call, where
    an op costs about its call overhead, so the pair costs about one branch. The sums are the same ones; the
    grouped kernels may round the last bits differently.

    A branch starts at an activation made by an op that cannot take lanes and holds the ops that can and read
    only it, the branch's own activations and constants. Branches whose ops match one to one (kind, attributes,
    constant shapes, wiring) are fused: their roots concatenated, each fused op placed where the branches' last
    copy of it was, and each branch activation read outside the branches (or a graph output) cut back out of
    the fused one (a slice view). Returns the new graph and the new constants.
    """
    new_consts: dict[str, torch.Tensor] = {}
    tried: set[tuple[str, ...]] = set()
    while True:  # after each fusion the graph changed: look again
        known = consts | new_consts
        for group in _matching_branches(graph, known):
            roots, lanes = zip(*group, strict=True)
            if roots in tried:
                continue
            tried.add(roots)
            fused = _fuse(graph, list(roots), list(lanes), known, new_consts, outputs)
            if fused is not None:
                graph = fused
                break
        else:
            return graph, new_consts


def _matching_branches(graph: list[dict], consts: dict[str, torch.Tensor]) -> list[list[tuple[str, list[int]]]]:
    """Groups of two or more branches (root, op indices) whose ops match one to one (see fuse_twin_branches)."""

    def const_shape(name: str | None) -> tuple | None:
        return None if name is None else tuple(consts[name].shape)

    def signature(op: dict) -> tuple:
        attrs = tuple(sorted((k, json.dumps(v)) for k, v in op.items() if k not in ("in", "out", "weight", "bias")))
        return attrs, const_shape(op.get("weight")), const_shape(op.get("bias"))

    signatures = [signature(op) if _lane_op(op) else None for op in graph]
    reads = [[name for name in op["in"] if name not in consts] for op in graph]
    groups: dict[tuple, list[tuple[str, list[int]]]] = {}
    for start, root_op in enumerate(graph):
        if signatures[start] is not None:
            continue
        local = {root_op["out"]: 0}  # the branch's activations: the root 0, the output of its op j j + 1
        ops, wiring = [], []
        for index in range(start + 1, len(graph)):
            op = graph[index]
            if signatures[index] is not None and reads[index] and all(name in local for name in reads[index]):
                wiring.append((signatures[index], tuple(local[n] if n in local else const_shape(n) for n in op["in"])))
                local[op["out"]] = len(ops) + 1
                ops.append(index)
        if len(ops) >= 2:
            groups.setdefault(tuple(wiring), []).append((root_op["out"], ops))
    return [g for g in groups.values() if len(g) > 1]


def _fuse(graph, roots, lanes, consts, new_consts, outputs) -> list[dict] | None:
    """``graph`` with the matching branches ``lanes`` (op indices, one list per root) fused; None when a reader
    outside the branches would come before the fused op it needs."""
    lane_of = {index: (i, j) for i, ops in enumerate(lanes) for j, index in enumerate(ops)}
    member = {}  # a branch activation -> (lane, j): j = 0 the root, j >= 1 the output of the branch's op j-1
    for i, (root, ops) in enumerate(zip(roots, lanes, strict=True)):
        member[root] = (i, 0)
        for j, index in enumerate(ops):
            member[graph[index]["out"]] = (i, j + 1)
    fused_names = ["+".join(roots)] + ["+".join(graph[ops[j]]["out"] for ops in lanes) for j in range(len(lanes[0]))]
    place = [max(ops[j] for ops in lanes) for j in range(len(lanes[0]))]  # where the fused op j goes
    last_root = max(index for index, op in enumerate(graph) if op["out"] in roots)
    readers = {name: len(graph) for name in outputs if member.get(name, (0, 0))[1] > 0}  # first reader outside
    for index, op in enumerate(graph):
        for name in op["in"]:
            if index not in lane_of and member.get(name, (0, 0))[1] > 0:
                readers[name] = min(readers.get(name, index), index)
    if any(first <= place[member[name][1] - 1] for name, first in readers.items()):
        return None
    new: list[dict] = []
    for index, op in enumerate(graph):
        if index not in lane_of:
            new.append(op)
            if index == last_root:
                shape = [*op["shape"][:3], op["shape"][3] * len(roots)]
                new.append({"op": "concatenation", "in": list(roots), "out": fused_names[0], "shape": shape,
                            "axis": 3, "act": None})  # fmt: skip
            continue
        j = lane_of[index][1]
        if index != place[j]:
            continue
        copies = [graph[ops[j]] for ops in lanes]
        new.append(_fused_op(copies, [fused_names[member[n][1]] if n in member else n for n in op["in"]],
                             fused_names[j + 1], consts, new_consts))  # fmt: skip
        _, height, width, channels = op["shape"]
        for lane, copy in enumerate(copies):
            if copy["out"] in readers:
                new.append({"op": "strided_slice", "in": [fused_names[j + 1]], "out": copy["out"], "shape": op["shape"],
                            "begin": [0, 0, 0, lane * channels], "end": [0, height, width, (lane + 1) * channels],
                            "strides": [1, 1, 1, 1]})  # fmt: skip
    return new


def _fused_op(copies: list[dict], inputs: list[str], out: str, consts: dict, new_consts: dict) -> dict:
    """One op doing the k ``copies`` (one per lane) on their lanes laid side by side along the channels."""
    k = len(copies)
    op = dict(copies[0], out=out)
    op["in"] = inputs
    op["shape"] = [*op["shape"][:3], op["shape"][3] * k]
    if op["op"] == "pad":
        op["lanes"] = k
    if op["op"] == "conv":
        op["groups"] = op["groups"] * k
    for key in ("weight", "bias"):
        if op.get(key) is not None:
            op[key] = "+".join(c[key] for c in copies)
            new_consts[op[key]] = torch.cat([consts[c[key]] for c in copies])
    return op


class GraphNet(torch.nn.Module):
    """One converted TFLite graph: ``forward(images)`` with images (B, 3, S, S) -> the graph's outputs.

    Constants are buffers (so ``.to(device, dtype)`` moves them); 4-D activations are NCHW and the
    ops that name an axis or a flat layout (pad, concat, reshape, slice) translate from TFLite's NHWC.
    """

    def __init__(self, path: str | Path, fuse_twins: bool = True):
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
        if fuse_twins:  # the mesh's two eye branches as one (see fuse_twin_branches)
            consts = {name: self._buffers[key] for name, key in self._names.items()}
            self.graph, fused = fuse_twin_branches(self.graph, consts, set(self.config["outputs"]))
            for name, tensor in fused.items():
                self._names[name] = key = f"w{len(self._names)}"
                self.register_buffer(key, tensor, persistent=False)
        self._owned, self._slice_adds = self._plan_in_place()
        self._pad_lanes = {op["out"]: op["lanes"] for op in self.graph if op["op"] == "pad" and "lanes" in op}
        self._dead_after = self._plan_lifetimes()
        # (height, width) of every 4-D activation, from the sizes the graph records (the input size is fixed)
        size = self.config["input_size"]
        self._spatial = {self.config["inputs"][0]: (size, size)}
        self._spatial.update({op["out"]: tuple(op["shape"][1:3]) for op in self.graph if len(op["shape"]) == 4})
        self._same = self._plan_same_padding()
        self._matrix = self._plan_matrix_convs()

    def _plan_matrix_convs(self) -> dict[str, str]:
        """Convolutions that run as one matrix product, and the buffer of each one's matrix.

        A 1x1 convolution (stride 1, not depthwise) is a product over the channels of the NHWC pixels, and one
        whose kernel covers its whole input (no padding: the mesh's and heads' last layers, one output pixel)
        is a product over the flattened NHWC input: both faster as ``torch.mm`` than ``conv2d``
        (conv2d of a channels-last input copies such a large weight on every call). The matrix is the weight in
        the input's NHWC order, (kh * kw * C_in, C_out), zero between groups.
        """
        matrices: dict[str, str] = {}
        for op in self.graph:
            if op["op"] != "conv":
                continue
            weight = self._const(op["weight"])
            out_channels, group_in, kh, kw = weight.shape
            pointwise = (kh, kw) == (1, 1) and op["stride"] == [1, 1] and (op["groups"] == 1 or group_in > 1)
            whole = not op["same"] and self._spatial.get(op["in"][0]) == (kh, kw) and op["shape"][1:3] == [1, 1]
            if not (pointwise or whole):
                continue
            groups = op["groups"]
            dense = weight.new_zeros(out_channels, group_in * groups, kh, kw)
            per_group = out_channels // groups
            for g in range(groups):
                rows = slice(g * per_group, (g + 1) * per_group)
                dense[rows, g * group_in : (g + 1) * group_in] = weight[rows]
            key = matrices[op["out"]] = f"{self._names[op['weight']]}_mm"
            self.register_buffer(key, dense.permute(0, 2, 3, 1).reshape(out_channels, -1).t(), persistent=False)
        return matrices

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
            if _appends_zero_channels(op) and uses.get(op["out"], 0) == 1
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
        pads = {}
        for op in self.graph:
            if op["op"] in ("conv", "max_pool_2d") and op["same"]:
                kernel = self._const(op["weight"]).shape[2:] if op["op"] == "conv" else op["kernel"]
                dilation = op.get("dilation", [1, 1])
                h, w = self._spatial[op["in"][0]]
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
                if op["out"] in self._matrix:
                    # a matrix product over the NHWC pixels (1x1) or the whole NHWC input (see
                    # _plan_matrix_convs); the bias added afterwards (addmm's broadcast copy of it is slow for
                    # 16-32 channels)
                    n, (oh, ow) = x.shape[0], op["shape"][1:3]
                    matrix = self._buffers[self._matrix[op["out"]]]
                    y = torch.mm(x.permute(NCHW_TO_NHWC).reshape(n * oh * ow, -1), matrix)
                    if b is not None:
                        y.add_(b)
                    y = y.view(n, oh, ow, -1).permute(NHWC_TO_NCHW)
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
                    lanes = self._pad_lanes.get(padded, 1)  # per lane: its channels, then its zero channels
                    c_in, c_out = unpadded.shape[1] // lanes, y.shape[1] // lanes
                    for lane in range(lanes):
                        y[:, lane * c_out : lane * c_out + c_in] += unpadded[:, lane * c_in : (lane + 1) * c_in]
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
                lanes = op.get("lanes", 1)
                if lanes > 1:  # fused branches: pad each lane's channels (channel pads only, see _lane_op)
                    n, h, w, c = x.shape
                    y = F.pad(x.reshape(n, h, w, lanes, c // lanes), pads[3]).reshape(n, h, w, -1)
                else:
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
    dispatches them from C++ (about 1.5x faster here than the Python loop), but tracing costs about 0.3 s,
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
