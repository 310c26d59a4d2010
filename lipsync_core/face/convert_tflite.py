"""Dev-only: convert MediaPipe's bundled TFLite face models into the safetensors the torch port loads.

Run once by a maintainer (never at run time, never by users)::

    pip install -r requirements-dev.txt      # mediapipe==0.10.14 (the models) and tflite (the reader)
    python -m lipsync_core.face.convert_tflite

It reads each flatbuffer with the ``tflite`` package, folds the DEQUANTIZE ops (fp16 weights -> fp32),
densifies sparse weights, turns the operator list into a small JSON graph and writes
``lipsync_core/face/data/<model>.safetensors`` with that graph, the model's config and
:data:`FORMAT_VERSION` in the metadata. :mod:`.torch_mesh` runs those graphs. The models are
Apache-2.0 (MediaPipe Authors); the attribution is in ``NOTICE`` and ``docs/MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
DATA_DIR = Path(__file__).resolve().parent / "data"
# name in the pack -> (file in the mediapipe wheel, config the pipeline needs besides the graph)
MODELS = {
    "face_detector_short": (
        "face_detection/face_detection_short_range.tflite",
        {"input_size": 128, "strides": [8, 16, 16, 16], "anchors_per_cell": [2, 6], "min_score": 0.5},
    ),
    "face_detector_full": (
        "face_detection/face_detection_full_range_sparse.tflite",
        {"input_size": 192, "strides": [4], "anchors_per_cell": [1], "min_score": 0.6},
    ),
    "face_mesh_attention": ("face_landmark/face_landmark_with_attention.tflite", {"input_size": 192}),
}
LICENSE_NOTE = (
    "MediaPipe face models (Apache-2.0, (c) The MediaPipe Authors), converted from the mediapipe 0.10.14 wheel"
)

_FUSED = {0: None, 1: "relu", 3: "relu6"}  # tflite ActivationFunctionType


def _builtin_names():
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def _tensor_array(model, graph, index: int) -> np.ndarray | None:
    """A constant tensor's values (densified when sparse), or None for an activation."""
    import tflite

    t = graph.Tensors(index)
    buf = model.Buffers(t.Buffer())
    if buf is None or buf.DataLength() == 0:
        return None
    dtype = {
        tflite.TensorType.FLOAT32: np.float32,
        tflite.TensorType.FLOAT16: np.float16,
        tflite.TensorType.INT32: np.int32,
        tflite.TensorType.INT64: np.int64,
    }[t.Type()]
    raw = np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=dtype)
    shape = [int(s) for s in t.ShapeAsNumpy()] if t.ShapeLength() else []
    sparsity = t.Sparsity()
    if sparsity is not None:
        return _densify(raw, shape, sparsity)
    return raw.reshape(shape) if shape else raw


def _densify(values: np.ndarray, shape: list[int], sparsity) -> np.ndarray:
    """TFLite sparse tensor (traversal order, block map, DENSE / CSR dimensions) -> dense array."""
    import tflite

    order = [int(i) for i in sparsity.TraversalOrderAsNumpy()]
    block_map = [int(i) for i in sparsity.BlockMapAsNumpy()] if sparsity.BlockMapLength() else []
    dims = []
    for d in range(sparsity.DimMetadataLength()):
        meta = sparsity.DimMetadata(d)
        if meta.Format() == tflite.DimensionType.DENSE:
            dims.append(("dense", int(meta.DenseSize()), None, None))
        else:
            segments = _int_vector(meta.ArraySegmentsType(), meta.ArraySegments())
            indices = _int_vector(meta.ArrayIndicesType(), meta.ArrayIndices())
            dims.append(("csr", 0, segments, indices))
    n_orig = len(shape)
    block_size = [dims[n_orig + i][1] for i in range(len(block_map))]
    # expanded shape in traversal order, then back to the original layout
    dense_shape = []
    for d in order:
        if d < n_orig:
            blocks = block_map.index(d) if d in block_map else None
            dense_shape.append(shape[d] // block_size[blocks] if blocks is not None else shape[d])
        else:
            dense_shape.append(block_size[d - n_orig])
    out = np.zeros(dense_shape, dtype=values.dtype)
    pos = [0]

    def walk(level: int, parent: int, index: tuple[int, ...]) -> None:
        kind, size, segments, indices = dims[level]
        if kind == "dense":
            children = [(i, parent * size + i) for i in range(size)]
        else:
            children = [(int(indices[k]), k) for k in range(int(segments[parent]), int(segments[parent + 1]))]
        for coord, child in children:
            if level + 1 == len(dims):
                out[index + (coord,)] = values[pos[0]]
                pos[0] += 1
            else:
                walk(level + 1, child, index + (coord,))

    walk(0, 0, ())
    # out axes follow `order`: put them in original dims, merging each block dim into its parent
    axes_by_dim = {}
    for axis, d in enumerate(order):
        axes_by_dim.setdefault(d if d < n_orig else block_map[d - n_orig], []).append(axis)
    perm = [a for d in range(n_orig) for a in sorted(axes_by_dim[d], key=lambda a: order[a])]
    return np.transpose(out, perm).reshape(shape)


def _int_vector(kind: int, table) -> np.ndarray:
    import tflite

    cls = {
        tflite.SparseIndexVector.Int32Vector: tflite.Int32Vector,
        tflite.SparseIndexVector.Uint16Vector: tflite.Uint16Vector,
        tflite.SparseIndexVector.Uint8Vector: tflite.Uint8Vector,
    }[kind]
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy()


def convert(tflite_path: Path) -> tuple[dict[str, np.ndarray], list[dict], dict]:
    """One TFLite model -> (weights by name, op list, io names). Activations keep TFLite's tensor names."""
    import tflite
    from flatbuffers import flexbuffers

    buf = tflite_path.read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    names = _builtin_names()

    def name(i: int) -> str:
        return graph.Tensors(i).Name().decode()

    def shape(i: int) -> list[int]:
        t = graph.Tensors(i)
        return [int(s) for s in t.ShapeAsNumpy()] if t.ShapeLength() else []

    consts: dict[str, np.ndarray] = {}
    weights: dict[str, np.ndarray] = {}
    ops: list[dict] = []

    def const(i: int) -> np.ndarray | None:
        key = name(i)
        if key in consts:
            return consts[key]
        value = _tensor_array(model, graph, i)
        if value is not None:
            consts[key] = value
        return value

    def weight(i: int, value: np.ndarray) -> str:
        key = name(i)
        weights[key] = np.ascontiguousarray(value.astype(np.float32))
        return key

    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins = [int(i) for i in op.InputsAsNumpy()]
        outs = [int(i) for i in op.OutputsAsNumpy()]
        if kind in ("DEQUANTIZE", "DENSIFY"):  # constants: fold into the weights
            consts[name(outs[0])] = const(ins[0]).astype(np.float32)
            continue
        entry: dict = {"op": kind.lower(), "in": [name(i) for i in ins if i >= 0], "out": name(outs[0])}
        entry["shape"] = shape(outs[0])
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opts_cls = tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions
            opts = opts_cls()
            table = op.BuiltinOptions()
            opts.Init(table.Bytes, table.Pos)
            w = const(ins[1])  # CONV: O,H,W,I ; DEPTHWISE: 1,H,W,C*M
            w = np.transpose(w, (0, 3, 1, 2)) if kind == "CONV_2D" else np.transpose(w, (3, 0, 1, 2))
            entry.update(
                op="conv",
                groups=1 if kind == "CONV_2D" else int(w.shape[0]),
                weight=weight(ins[1], w),
                bias=weight(ins[2], const(ins[2])) if len(ins) > 2 and ins[2] >= 0 else None,
                stride=[int(opts.StrideH()), int(opts.StrideW())],
                dilation=[int(opts.DilationHFactor()), int(opts.DilationWFactor())],
                same=opts.Padding() == tflite.Padding.SAME,
                act=_FUSED[opts.FusedActivationFunction()],
                **{"in": [name(ins[0])]},
            )
        elif kind == "MAX_POOL_2D":
            opts = tflite.Pool2DOptions()
            table = op.BuiltinOptions()
            opts.Init(table.Bytes, table.Pos)
            entry.update(
                kernel=[int(opts.FilterHeight()), int(opts.FilterWidth())],
                stride=[int(opts.StrideH()), int(opts.StrideW())],
                same=opts.Padding() == tflite.Padding.SAME,
            )
        elif kind == "PRELU":
            entry.update(weight=weight(ins[1], const(ins[1]).reshape(-1)), **{"in": [name(ins[0])]})
        elif kind in ("ADD", "MUL"):
            table = op.BuiltinOptions()
            act = None
            if table is not None:
                opts = tflite.AddOptions() if kind == "ADD" else tflite.MulOptions()
                opts.Init(table.Bytes, table.Pos)
                act = _FUSED[opts.FusedActivationFunction()]
            entry["act"] = act
            for i in ins:
                if const(i) is not None:
                    weight(i, const(i))
        elif kind == "PAD":
            entry.update(pads=const(ins[1]).tolist(), **{"in": [name(ins[0])]})
        elif kind == "CONCATENATION":
            opts = tflite.ConcatenationOptions()
            table = op.BuiltinOptions()
            opts.Init(table.Bytes, table.Pos)
            entry.update(axis=int(opts.Axis()), act=_FUSED[opts.FusedActivationFunction()])
        elif kind == "RESHAPE":
            entry["in"] = [name(ins[0])]
        elif kind == "STRIDED_SLICE":
            entry.update(
                begin=const(ins[1]).tolist(), end=const(ins[2]).tolist(), strides=const(ins[3]).tolist(),
                **{"in": [name(ins[0])]},
            )
        elif kind == "RESIZE_BILINEAR":
            opts = tflite.ResizeBilinearOptions()
            table = op.BuiltinOptions()
            opts.Init(table.Bytes, table.Pos)
            entry.update(
                align_corners=bool(opts.AlignCorners()), half_pixel=bool(opts.HalfPixelCenters()),
                **{"in": [name(ins[0])]},
            )
        elif kind == "DEPTH_TO_SPACE":
            opts = tflite.DepthToSpaceOptions()
            table = op.BuiltinOptions()
            opts.Init(table.Bytes, table.Pos)
            entry["block"] = int(opts.BlockSize())
        elif kind == "RELU":
            pass
        elif kind == "CUSTOM":
            custom = code.CustomCode().decode()
            raw = op.CustomOptionsAsNumpy()
            options = flexbuffers.Loads(raw.tobytes()) if not isinstance(raw, int) else {}
            entry.update(op=custom, options=options if isinstance(options, dict) else {})
        else:
            raise NotImplementedError(f"{tflite_path.name}: operator {kind} has no torch counterpart yet")
        ops.append(entry)
    io = {
        "inputs": [name(int(i)) for i in graph.InputsAsNumpy()],
        "outputs": [name(int(i)) for i in graph.OutputsAsNumpy()],
    }
    io["input_shape"] = shape(int(graph.InputsAsNumpy()[0]))
    return weights, ops, io


def _compact(value: np.ndarray) -> np.ndarray:
    """fp16 when that is lossless (the models store fp16 weights), else fp32."""
    half = value.astype(np.float16)
    return half if np.array_equal(half.astype(np.float32), value) else value


def main(argv: list[str] | None = None) -> None:
    from safetensors.numpy import save_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mediapipe-modules", type=Path, default=None, help="mediapipe/modules folder of the wheel")
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    modules = args.mediapipe_modules
    if modules is None:
        import mediapipe

        modules = Path(mediapipe.__file__).parent / "modules"
    args.out.mkdir(parents=True, exist_ok=True)
    for model_name, (relative, config) in MODELS.items():
        weights, ops, io = convert(modules / relative)
        meta = {
            "format_version": str(FORMAT_VERSION),
            "config": json.dumps({"name": model_name, **config, **io}),
            "graph": json.dumps(ops),
            "source": f"mediapipe 0.10.14 wheel: mediapipe/modules/{relative}",
            "license": LICENSE_NOTE,
        }
        path = args.out / f"{model_name}.safetensors"
        save_file({k: _compact(v) for k, v in weights.items()}, str(path), metadata=meta)
        print(f"{path.name}: {len(ops)} ops, {sum(v.size for v in weights.values())} weights, "
              f"{path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
