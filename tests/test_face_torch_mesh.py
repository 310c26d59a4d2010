"""The torch face mesh against the mediapipe package (legacy FaceMesh, refine_landmarks=True).

Images (the astronaut photo and transformed copies, pictures without a face) in static and video
mode, and clips in video mode (the puppet demo clips, a drifting and turning astronaut, a clip with a
cut to black and back). Targets (issue 13): mean landmark distance <= 0.5 % of the inter-ocular
distance, 95th percentile <= 1 %, and the same face / no-face verdict on every frame.
``python -m pytest tests/test_face_torch_mesh.py -s`` prints the figures per case.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from lipsync_core.face.template import interocular
from lipsync_core.face.torch_mesh import TorchFaceMesh, sample_regions
from lipsync_core.face.torch_nets import (
    landmarks_to_transform_matrix,
    load_net,
    ssd_anchors,
    transform_landmarks,
    transform_tensor_bilinear,
)

DEMO = Path(__file__).resolve().parents[1] / "lipsync_core" / "assets" / "demo"
MEAN_LIMIT, P95_LIMIT = 0.005, 0.01  # of the inter-ocular distance
needs_mediapipe = pytest.mark.skipif(
    importlib.util.find_spec("mediapipe") is None, reason="the mediapipe package is not installed (requirements-dev)"
)
REPORT: list[str] = []
ALL: list[tuple] = []  # (largest-face distances, all-face distances, result) of every comparison


def _mediapipe(frames: np.ndarray, static: bool) -> list[list[np.ndarray]]:
    import mediapipe as mp

    mesh = mp.solutions.face_mesh.FaceMesh(
        static_image_mode=static, max_num_faces=4, refine_landmarks=True,
        min_detection_confidence=0.5, min_tracking_confidence=0.5,
    )  # fmt: skip
    out = []
    try:
        for frame in frames:
            found = mesh.process(np.ascontiguousarray(frame)).multi_face_landmarks or []
            out.append([np.array([(p.x, p.y, p.z) for p in f.landmark], np.float64) for f in found])
    finally:
        mesh.close()
    return out


def _pixels(points: np.ndarray, width: int, height: int) -> np.ndarray:
    return points[:, :2] * (width, height)


def compare(frames: np.ndarray, static: bool, name: str) -> dict:
    """Run both on the frames; per-landmark distances in IOD units and the verdicts."""
    height, width = frames.shape[1:3]
    ref = _mediapipe(frames, static)
    got = TorchFaceMesh(static=static).process_batch(frames)
    largest, every, verdicts_agree, counts_agree = [], [], 0, 0
    for r, g in zip(ref, got, strict=True):
        verdicts_agree += bool(r) == bool(g)
        counts_agree += len(r) == len(g)
        faces = []
        for face in r:
            pr = _pixels(face, width, height)
            iod = float(interocular(np.concatenate([pr, np.zeros((len(pr), 1))], 1)))
            # the torch face nearest to this one (faces may come in another order); none within half an
            # IOD means this face has no counterpart (a count disagreement, reported, not a distance)
            pg = min((_pixels(f, width, height) for f in g), key=lambda p: np.abs(p - pr).mean(), default=None)
            if pg is None or np.linalg.norm(pg - pr, axis=1).mean() > 0.5 * iod:
                continue
            faces.append((iod, np.linalg.norm(pg - pr, axis=1) / iod))
        every += [d for _, d in faces]
        if faces:
            largest.append(max(faces, key=lambda f: f[0])[1])  # the face a tracker follows by default
    result = {"frames": len(frames), "agree": verdicts_agree, "counts_agree": counts_agree,
              "with_face": sum(bool(r) for r in ref), "faces": len(every)}  # fmt: skip
    for key, found in (("", largest), ("all_", every)):
        d = np.concatenate(found) if found else np.zeros(1)
        result.update({f"{key}mean": float(d.mean()), f"{key}p95": float(np.percentile(d, 95)),
                       f"{key}max": float(d.max())})  # fmt: skip
    REPORT.append(
        f"{name:32s} {'static' if static else 'video':6s} {result['frames']:4d} frames, {result['with_face']:4d} "
        f"with a face, verdicts agree {result['agree']:4d}, face counts agree {result['counts_agree']:4d}; largest "
        f"face: mean {100 * result['mean']:.3f}% p95 {100 * result['p95']:.3f}% max {100 * result['max']:.3f}%; "
        f"all {result['faces']} faces: mean {100 * result['all_mean']:.3f}% p95 {100 * result['all_p95']:.3f}% "
        f"max {100 * result['all_max']:.3f}% of IOD"
    )
    ALL.append((largest, every, result))
    return result


def _check(result: dict) -> None:
    """Same face / no-face verdicts; the targets on the face the tracker follows.

    Every face is reported too: a clip may hold a false "face" (the demo's other_style.mp4 does, in the
    clothes) that both track for a few frames; on a non-face the mesh is chaotic and the two drift apart.
    The whole set, those included, is held to the targets in test_zz_whole_test_set_meets_the_targets.
    """
    assert result["agree"] == result["frames"], result
    assert result["mean"] <= MEAN_LIMIT and result["p95"] <= P95_LIMIT, result


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


def _rotated(img: np.ndarray, degrees: float, scale: float = 1.0) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, scale)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(90, 90, 90))


def _letterbox(img: np.ndarray, height: int, width: int) -> np.ndarray:
    out = np.full((height, width, 3), 40, np.uint8)
    side = min(height, width)
    small = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA if side < img.shape[0] else cv2.INTER_CUBIC)
    y, x = (height - side) // 2, (width - side) // 3
    out[y : y + side, x : x + side] = small
    return out


def _face(a: np.ndarray) -> np.ndarray:
    """The astronaut's head and shoulders (300 x 300): a larger face for the scaled copies."""
    return np.ascontiguousarray(a[10:310, 90:390])


IMAGE_CASES = {
    "astronaut": lambda a: a,
    "head crop": _face,
    "rotated +20": lambda a: _rotated(a, 20),
    "rotated -35": lambda a: _rotated(a, -35),
    "rotated +60": lambda a: _rotated(a, 60),
    "upside down": lambda a: np.ascontiguousarray(a[::-1]),
    "mirrored": lambda a: np.ascontiguousarray(a[:, ::-1]),
    "scaled 0.6": lambda a: _rotated(_face(a), 0, 0.6),
    "scaled 0.35": lambda a: _rotated(_face(a), 0, 0.35),
    "scaled 1.6": lambda a: _rotated(a, 0, 1.6),
    "head crop to 96 px": lambda a: cv2.resize(_face(a), (96, 96), interpolation=cv2.INTER_AREA),
    "crop 300x220": lambda a: np.ascontiguousarray(a[20:240, 100:400]),
    "crop cuts the face": lambda a: np.ascontiguousarray(a[60:330, 230:512]),
    "1080p letterbox": lambda a: _letterbox(_face(a), 1080, 1920),
    "portrait 480x800": lambda a: _letterbox(_face(a), 800, 480),
    "small in 1080p (missed)": lambda a: _letterbox(a, 1080, 1920),
    "dark and noisy": lambda a: np.clip(a * 0.35 + np.random.default_rng(0).normal(0, 8, a.shape), 0, 255).astype(
        np.uint8
    ),
}
NO_FACE_CASES = {
    "grey": lambda a: np.full((360, 480, 3), 128, np.uint8),
    "noise": lambda a: np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8),
    "coffee": lambda a: skimage.data.coffee(),
    "rocket": lambda a: skimage.data.rocket(),
}


@needs_mediapipe
@pytest.mark.parametrize("static", [True, False])
def test_images_agree_with_mediapipe(astronaut, static):
    frames = {name: make(astronaut) for name, make in {**IMAGE_CASES, **NO_FACE_CASES}.items()}
    results = {name: compare(f[None], static, name) for name, f in frames.items()}
    for name, result in results.items():
        assert result["agree"] == 1, name
        if result["faces"]:
            assert result["mean"] <= MEAN_LIMIT and result["p95"] <= P95_LIMIT, (name, result)
    assert all(results[name]["with_face"] == 0 for name in NO_FACE_CASES)
    missed = {name for name in IMAGE_CASES if not results[name]["with_face"]}
    assert missed <= {"scaled 0.35", "crop cuts the face", "small in 1080p (missed)", "upside down"}, missed


def _drifting(face: np.ndarray, frames: int, height: int, width: int) -> np.ndarray:
    side = min(height, width)
    face = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    out = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):
        m = cv2.getRotationMatrix2D((side / 2, side / 2), 12 * np.sin(i / 6), 1.0 + 0.1 * np.sin(i / 9))
        m[0, 2] += (width - side) / 2 + 20 * np.sin(i / 5)
        m[1, 2] += (height - side) / 2 + 10 * np.cos(i / 7)
        out[i] = cv2.warpAffine(face, m, (width, height), borderMode=cv2.BORDER_REFLECT)
    return out


@needs_mediapipe
def test_drifting_face_and_a_cut_agree_in_video_mode(astronaut):
    moving = _drifting(astronaut, 24, 360, 640)
    other = _drifting(_rotated(_face(astronaut)[:, ::-1], 25, 0.9), 10, 360, 640)
    clip = np.concatenate([moving, np.zeros((4, 360, 640, 3), np.uint8), other])
    result = compare(clip, False, "drifting + cut to black + other")
    _check(result)
    assert result["with_face"] >= 30


@needs_mediapipe
@pytest.mark.parametrize("name", ["video", "reference", "target", "other_style"])
def test_puppet_demo_clips_agree_in_video_mode(name):
    from lipsync_core.synthetic.io import read_video

    frames, _ = read_video(DEMO / f"{name}.mp4")
    result = compare(frames, False, f"demo {name}.mp4")
    _check(result)
    assert result["with_face"] == len(frames)


@needs_mediapipe
def test_a_fresh_puppet_clip_agrees(tmp_path):
    from lipsync_core.synthetic.clip import generate_clip, make_speakers
    from lipsync_core.synthetic.tts import espeak_available

    if not espeak_available():
        pytest.skip("espeakng-loader (training extra) not installed")
    clip = generate_clip(make_speakers(3, seed=5)[2], "Please bring the blue chair.", seed=3, size=320)
    _check(compare(clip.frames, False, "puppet clip 320 px"))


def test_zz_whole_test_set_meets_the_targets():
    """All comparisons above pooled: the issue's targets on the whole test set (run with -s for the table)."""
    if not ALL:
        pytest.skip("no comparison ran")
    largest = np.concatenate([d for item in ALL for d in item[0]])
    every = np.concatenate([d for item in ALL for d in item[1]])
    frames = sum(item[2]["frames"] for item in ALL)
    agree = sum(item[2]["agree"] for item in ALL)
    REPORT.append(
        f"WHOLE SET: {frames} frames, verdicts agree on {agree}; largest face: mean {100 * largest.mean():.3f}% "
        f"p95 {100 * np.percentile(largest, 95):.3f}%; all faces: mean {100 * every.mean():.3f}% "
        f"p95 {100 * np.percentile(every, 95):.3f}% of IOD"
    )
    print("\n" + "\n".join(REPORT))
    assert agree == frames
    assert largest.mean() <= MEAN_LIMIT and np.percentile(largest, 95) <= P95_LIMIT
    assert every.mean() <= MEAN_LIMIT and np.percentile(every, 95) <= P95_LIMIT


# ---------------------------------------------------------------- parts, without mediapipe


def test_anchors_match_mediapipe_counts():
    assert ssd_anchors(128, [8, 16, 16, 16], [2, 6]).shape == (896, 2)
    assert ssd_anchors(192, [4], [1]).shape == (2304, 2)
    a = ssd_anchors(128, [8, 16, 16, 16], [2, 6])
    assert torch.allclose(a[0], torch.tensor([0.5 / 16, 0.5 / 16])) and torch.allclose(a[1], a[0])


def test_region_sampling_is_a_rotated_crop():
    """A region at 90 degrees turns the picture; a region of the whole frame reproduces it (1/32 px grid)."""
    img = torch.from_numpy(skimage.data.astronaut()[::4, ::4].copy())[None]  # 128 x 128
    whole = sample_regions(img, torch.tensor([0]), torch.tensor([[64.0, 64.0, 128.0, 128.0, 0.0]]), 128, True)
    assert torch.equal(whole[0].permute(1, 2, 0).to(torch.uint8), img[0])
    turned = sample_regions(img, torch.tensor([0]), torch.tensor([[64.0, 64.0, 128.0, 128.0, np.pi / 2]]), 128, True)
    # a quarter turn of the picture, one row off: the output's corners sit on the region's corners
    expected = torch.rot90(img[0], k=1, dims=(0, 1))
    assert torch.equal(turned[0].permute(1, 2, 0)[1:].to(torch.uint8), expected[:-1])


def test_custom_ops_follow_mediapipe_definitions():
    torch.manual_seed(0)
    pts = torch.rand(2, 468, 3) * 48
    opts = {"left_rotation_idx": 0, "right_rotation_idx": 1, "subset_idxs": [0, 1, 2, 3], "scale_x": 1.5,
            "scale_y": 1.5, "output_width": 16, "output_height": 16, "target_rotation_radians": 0.0}  # fmt: skip
    m = landmarks_to_transform_matrix(pts, opts)
    # the matrix maps the crop's centre to the subset's box centre (in the rotated frame) and keeps z
    centre = transform_landmarks(torch.full((2, 1, 2), 8.0), m)[:, 0]
    left, right = pts[:, 0, :2], pts[:, 1, :2]
    angle = -torch.atan2(right[:, 1] - left[:, 1], right[:, 0] - left[:, 0])
    rot = torch.stack([torch.cos(angle), -torch.sin(angle), torch.sin(angle), torch.cos(angle)], -1).view(2, 2, 2)
    sub = pts[:, :4, :2] @ rot.transpose(1, 2)
    mid = (sub.amin(1) + sub.amax(1)) / 2
    assert torch.allclose(centre, (mid[:, None] @ rot)[:, 0], atol=1e-4)
    assert torch.all(m[:, 2, 2] == 1) and torch.all(m[:, 3, 3] == 1)
    # identity matrix: bilinear sampling returns the input (pixel centres)
    feat = torch.rand(1, 4, 16, 16)
    eye = torch.eye(4)[None]
    assert torch.allclose(transform_tensor_bilinear(feat, eye, (16, 16)), feat, atol=1e-5)


def test_networks_run_batched_and_in_half_precision():
    mesh = load_net("face_mesh_attention")
    x = torch.rand(3, 3, 192, 192)
    full = mesh(x)
    single = mesh(x[1:2])
    for a, b in zip(full, single, strict=True):
        assert torch.allclose(a[1:2], b, atol=1e-4)
    half = TorchFaceMesh(dtype=torch.bfloat16)._mesh(x.to(torch.bfloat16))
    assert torch.allclose(half[0].float(), full[0], atol=2.0)  # pixels of a 192 crop


def test_a_feed_over_the_cpu_batch_runs_in_parts_with_the_same_outputs():
    from lipsync_core.face.torch_nets import CPU_BATCH

    detector = load_net("face_detector_short")
    x = torch.rand(CPU_BATCH + 3, 3, 128, 128)
    with torch.inference_mode():
        whole = detector(x)
        parts = [detector(x[:CPU_BATCH]), detector(x[CPU_BATCH:])]
    for out, first, rest in zip(whole, *parts, strict=True):
        assert out.shape[0] == CPU_BATCH + 3
        assert torch.equal(out, torch.cat([first, rest]))


def test_each_activation_is_dropped_once_after_its_last_reader():
    """The runner frees activations as it goes (holding them all made every op write to fresh memory)."""
    for name in ("face_detector_short", "face_detector_full", "face_mesh_attention"):
        net = load_net(name)
        dropped_at = {n: i for i, names in enumerate(net._dead_after) for n in names}
        assert sum(len(names) for names in net._dead_after) == len(dropped_at)  # once each
        for index, op in enumerate(net.graph):
            for read in op["in"]:
                read = net._slice_adds.get(read, read)  # a folded pad is read as its input
                if read not in net._names:  # not a constant
                    assert read in net.config["outputs"] or dropped_at[read] >= index
        assert not set(net.config["outputs"]) & set(dropped_at)


def test_the_twin_eye_branches_run_as_one_with_the_same_outputs():
    """The mesh's left and right eye refinements (the same sub-network, other weights) are fused into one branch
    twice as wide: fewer ops, the same numbers (up to the last bits the grouped kernels round)."""
    from lipsync_core.face.torch_nets import DATA_DIR, GraphNet

    path = DATA_DIR / "face_mesh_attention.safetensors"
    plain, fused = GraphNet(path, fuse_twins=False).eval(), GraphNet(path).eval()
    assert len(plain.graph) - len(fused.graph) >= 75  # 341 -> 262: one copy of 86 ops, plus joins and cut-outs
    assert any(op["op"] == "conv" and "+" in op["out"] and op["groups"] == 2 for op in fused.graph)
    x = torch.rand(3, 3, 192, 192)
    with torch.inference_mode():
        for batch in (x[:1], x):
            for a, b in zip(plain(batch), fused(batch), strict=True):
                assert a.shape == b.shape
                assert torch.allclose(a, b, rtol=0, atol=1e-3)  # landmarks in pixels of the 192 crop
    for name in ("face_detector_short", "face_detector_full"):  # nothing twin there: the graph stays as it is
        path = DATA_DIR / f"{name}.safetensors"
        assert GraphNet(path).graph == GraphNet(path, fuse_twins=False).graph


def test_twin_fusion_on_a_small_graph(tmp_path):
    """The fusion is generic: two matching branches of a made-up graph (a grouped 1x1 convolution, a channel pad
    two ops read, so it is not folded into an add, an add and a PReLU each), fused and not, give the same
    outputs; a branch's activation that is a graph output is cut back out."""
    import json

    from safetensors.torch import save_file

    from lipsync_core.face.torch_nets import FORMAT_VERSION, GraphNet

    graph, weights = [], {}
    for side, lo in (("l", 0), ("r", 2)):
        graph.append({"op": "strided_slice", "in": ["img"], "out": side, "shape": [1, 8, 8, 2],
                      "begin": [0, 0, 0, lo], "end": [1, 8, 8, lo + 2], "strides": [1, 1, 1, 1]})  # fmt: skip
    for side in ("l", "r"):
        weights |= {f"{side}w": torch.randn(3, 2, 1, 1), f"{side}b": torch.randn(3), f"{side}a": torch.rand(5)}
        graph += [
            {"op": "conv", "in": [side], "out": f"{side}1", "shape": [1, 8, 8, 3], "groups": 1, "weight": f"{side}w",
             "bias": f"{side}b", "stride": [1, 1], "dilation": [1, 1], "same": False, "act": "relu"},
            {"op": "pad", "in": [f"{side}1"], "out": f"{side}2", "shape": [1, 8, 8, 5],
             "pads": [[0, 0], [0, 0], [0, 0], [0, 2]]},
            {"op": "add", "in": [f"{side}2", f"{side}2"], "out": f"{side}3", "shape": [1, 8, 8, 5], "act": None},
            {"op": "prelu", "in": [f"{side}3"], "out": f"{side}4", "shape": [1, 8, 8, 5], "weight": f"{side}a"},
        ]  # fmt: skip
    config = {"name": "twins", "inputs": ["img"], "outputs": ["l4", "r4", "l1"], "input_size": 8}
    path = tmp_path / "twins.safetensors"
    save_file(weights, str(path), metadata={"format_version": str(FORMAT_VERSION), "config": json.dumps(config),
                                            "graph": json.dumps(graph)})  # fmt: skip
    plain, fused = GraphNet(path, fuse_twins=False), GraphNet(path)
    assert len(fused.graph) == len(plain.graph) - 4 + 1 + 3  # 4 ops fewer; a concatenation, 3 outputs cut out
    assert any(op["op"] == "pad" and op.get("lanes") == 2 for op in fused.graph)
    x = torch.randn(2, 4, 8, 8)
    with torch.inference_mode():
        for a, b in zip(plain(x), fused(x), strict=True):
            assert torch.allclose(a, b, atol=1e-6)


def test_matrix_convolutions_equal_conv2d():
    """1x1 convolutions and those covering their whole input run as matrix products (grouped ones included)."""
    import torch.nn.functional as F

    for name in ("face_detector_short", "face_detector_full", "face_mesh_attention"):
        net = load_net(name)
        planned = [op for op in net.graph if op["out"] in net._matrix]
        assert planned
        whole = [op for op in planned if op["shape"][1:3] == [1, 1]]
        assert (len(whole) >= 5) == (name == "face_mesh_attention")  # mesh, face flag, lips, eyes, irises
        for op in planned:
            weight = net._const(op["weight"])
            bias = net._const(op["bias"]) if op["bias"] else None
            channels = weight.shape[1] * op["groups"]
            side = weight.shape[2:] if op["shape"][1:3] == [1, 1] else op["shape"][1:3]  # whole input, or 1x1
            x = torch.rand(2, channels, *side).contiguous(memory_format=torch.channels_last)
            expected = F.conv2d(x, weight, bias, op["stride"], 0, 1, op["groups"])
            n, (oh, ow) = 2, op["shape"][1:3]
            got = torch.mm(x.permute(0, 2, 3, 1).reshape(n * oh * ow, -1), net._buffers[net._matrix[op["out"]]])
            got = (got if bias is None else got + bias).view(n, oh, ow, -1).permute(0, 3, 1, 2)
            assert torch.allclose(got, expected, rtol=1e-5, atol=1e-4), op["out"]


def test_the_torch_crop_path_matches_the_opencv_one(astronaut):
    """Frames as a torch tensor take the device path (torch warp, as on a GPU); numpy frames take OpenCV's."""
    mesh = TorchFaceMesh(static=True)
    frames = np.stack([astronaut, np.ascontiguousarray(astronaut[:, ::-1])])
    on_cpu = mesh.process_batch(frames)
    regions = [
        np.array([0.45, 0.24, 0.33, 0.33, 0.05]),  # around the astronaut's face, slightly turned
        np.array([0.55, 0.24, 0.33, 0.33, -0.05]),
    ]
    via_torch = mesh.mesh(torch.from_numpy(frames), [0, 1], regions)
    via_cv2 = mesh.mesh(frames, [0, 1], regions)
    for a, b in zip(via_torch, via_cv2, strict=True):
        iod = float(interocular(np.concatenate([a[:, :2] * 512, np.zeros((478, 1))], 1)))
        assert np.abs(a[:, :2] - b[:, :2]).max() * 512 / iod < 0.01
    assert all(len(f) == 1 for f in on_cpu)


def test_the_traced_cpu_graph_equals_the_eager_one():
    from lipsync_core.face.torch_nets import load_cpu_net

    for name in ("face_detector_short", "face_mesh_attention"):
        eager, traced = load_net(name), load_cpu_net(name, trace_after_frames=2)
        size = eager.config["input_size"]
        x = torch.rand(2, 3, size, size)
        with torch.inference_mode():
            first = traced(x)  # 2 frames: not traced yet
            assert traced._traced is None
            second = traced(x)  # 4 > 2: traced now, and from then on
            assert traced._traced is not None and traced.trace_after_frames is None
            for a, b, c in zip(eager(x), first, second, strict=True):
                assert torch.equal(a, b)
                assert torch.allclose(a, c, atol=1e-5)
