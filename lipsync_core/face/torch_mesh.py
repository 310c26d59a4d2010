"""MediaPipe's legacy face mesh pipeline (refined, 478 points) in torch: detection, tracking, landmarks.

What runs per frame, as MediaPipe's ``FaceLandmarkFrontCpu`` graph does it (``refine_landmarks=True``):

1. Unless ``max_faces`` faces are already tracked: BlazeFace short range on a 128x128 letterbox of the
   frame; sigmoid scores >= ``min_detection``, weighted non-max suppression (IoU 0.3), at most
   ``max_faces`` detections, each turned into a region: the box, rotated so the eyes are level,
   squared on its long side and scaled 1.5x.
2. Those regions and the ones tracked from the previous frame's landmarks are merged (IoU > 0.5: the
   tracked one wins).
3. Each region is cut out rotated at 192x192 and meshed (468 points, then lips, eyes and irises refined
   by the attention heads: 478). A face-presence score <= ``min_tracking`` drops the face (track lost).
4. The landmarks' bounding box, rotated by the eye corners (33, 263), squared and scaled 1.5x is the
   next frame's region (tracking mode; ``static=True`` detects on every frame instead).

Optionally (the small-face fallback of the mediapipe backend) BlazeFace full range finds faces the
short-range model misses; they are meshed the same way and tracked from then on.

Frames are batched: the detector runs on the whole batch at once; the mesh runs frame after frame in
tracking mode (each region depends on the previous frame) and on the whole batch in static mode.
Any torch device; ``dtype`` float16/bfloat16 runs the networks in half precision (CUDA).
Landmarks come out normalised as MediaPipe's (x, y in 0..1 of width and height, z in units of width).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .torch_nets import DATA_DIR, GraphNet, load_cpu_net, ssd_anchors

MESH_SIZE = 192
ROI_SCALE = 1.5
NMS_IOU = 0.3
ASSOCIATION_IOU = 0.5
EYE_CORNERS = (33, 263)  # rotation of a region from landmarks: left side of left eye, right side of right eye
DETECTION_EYES = (0, 1)  # BlazeFace keypoints: the two eyes
# OpenCV's bilinear warp (what MediaPipe's CPU image-to-tensor uses) puts coordinates on a 1/32 pixel grid.
WARP_SUBPIXELS = 32

# Refinement of the 468 mesh points by the attention heads (MediaPipe's
# tensors_to_face_landmarks_with_attention graph, Apache-2.0): which mesh point each head point replaces.
LIPS = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
    76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408,
    62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407,
)
LEFT_EYE = (
    33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
    130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190,
    226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189,
    35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245,
    156, 70, 63, 105, 66, 107, 55, 193,
)
RIGHT_EYE = (
    263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
    359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414,
    446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413,
    265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465,
    383, 300, 293, 334, 296, 336, 285, 417,
)
LEFT_IRIS = tuple(range(468, 473))
RIGHT_IRIS = tuple(range(473, 478))
# Tracking meshes one frame a call; the mesh's TorchScript trace (0.29-0.39 s here with its first call since
# session 12's smaller graph) saves 1.5-4 ms a frame (median 3.3: about a third), so it is made once this many
# frames have gone through: about when the untraced calls' extra time equals the trace's cost (3.2 s at 25 fps);
# a short clip never pays for it.
MESH_TRACE_AFTER_FRAMES = 80
EYE_CONTOUR = 16  # the first 16 eye points are the eye's contour: the iris depth is their mean depth


def normalize_radians(angle: np.ndarray | float) -> np.ndarray | float:
    return angle - 2 * math.pi * np.floor((angle + math.pi) / (2 * math.pi))


def region_from_box(
    box: np.ndarray, start: np.ndarray, end: np.ndarray, width: int, height: int
) -> np.ndarray:
    """(xmin, ymin, xmax, ymax) normalised + two points giving the roll -> region (xc, yc, w, h, rotation).

    MediaPipe's DetectionsToRects (rotation so that start->end is horizontal) then RectTransformation
    (square on the long side in pixels, scaled by ROI_SCALE).
    """
    rotation = normalize_radians(-math.atan2(-(end[1] - start[1]) * height, (end[0] - start[0]) * width))
    w, h = box[2] - box[0], box[3] - box[1]
    long_side = max(w * width, h * height)
    return np.array(
        [box[0] + w / 2, box[1] + h / 2, long_side / width * ROI_SCALE, long_side / height * ROI_SCALE, rotation],
        dtype=np.float64,
    )


def regions_from_detections(detections: list[tuple], width: int, height: int) -> list[np.ndarray]:
    """A frame's BlazeFace detections (box, keypoints, score) -> their regions, rolled by the two eyes."""
    return [
        region_from_box(box, kps[DETECTION_EYES[0]], kps[DETECTION_EYES[1]], width, height)
        for box, kps, _ in detections
    ]


def region_from_landmarks(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised landmarks (N, 3) -> the next frame's region (MediaPipe's FaceLandmarkLandmarksToRoi)."""
    box = np.concatenate([points[:, :2].min(0), points[:, :2].max(0)])
    return region_from_box(box, points[EYE_CORNERS[0]], points[EYE_CORNERS[1]], width, height)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (xmin, ymin, xmax, ymax) boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _region_box(region: np.ndarray) -> np.ndarray:
    """Axis-aligned box of a region, ignoring rotation (as MediaPipe's association does)."""
    return np.array(
        [region[0] - region[2] / 2, region[1] - region[3] / 2, region[0] + region[2] / 2, region[1] + region[3] / 2]
    )


def associate(detected: list[np.ndarray], tracked: list[np.ndarray]) -> list[np.ndarray]:
    """MediaPipe's AssociationNormRect: later regions replace earlier ones they overlap (IoU > 0.5)."""
    result: list[np.ndarray] = []
    for region in list(detected) + list(tracked):
        box = _region_box(region)
        result = [r for r in result if _iou(_region_box(r), box) <= ASSOCIATION_IOU]
        result.append(region)
    return result


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray) -> list[tuple]:
    """MediaPipe's weighted non-max suppression: overlapping detections (IoU > 0.3) are averaged by score.

    boxes (N, 4) xmin, ymin, xmax, ymax; keypoints (N, K, 2); scores (N,). Returns (box, keypoints, score)
    of each kept detection, best first.
    """
    order = list(np.argsort(-scores, kind="stable"))
    kept = []
    while order:
        top = order[0]
        overlap = [i for i in order if _iou(boxes[i], boxes[top]) > NMS_IOU]
        rest = [i for i in order if _iou(boxes[i], boxes[top]) <= NMS_IOU]
        w = scores[overlap]
        box = (boxes[overlap] * w[:, None]).sum(0) / w.sum()
        kps = (keypoints[overlap] * w[:, None, None]).sum(0) / w.sum()
        kept.append((box, kps, float(scores[top])))
        if len(rest) == len(order):
            break
        order = rest
    return kept


def sample_regions(
    frames: torch.Tensor,
    frame_index: torch.Tensor,
    regions: torch.Tensor,
    size: int,
    replicate: bool,
) -> torch.Tensor:
    """Cut rotated regions out of uint8 frames (B, H, W, 3) -> (K, 3, size, size) float, values 0..255.

    ``regions`` (K, 5) are in pixels: centre x, centre y, width, height, rotation. Like MediaPipe's CPU
    ImageToTensor (OpenCV warpPerspective from the region's corners to the output's corners): bilinear on
    a 1/32-pixel grid, rounded to integers, border replicated or zero.
    """
    _, height, width, _ = frames.shape
    k = regions.shape[0]
    dev = frames.device
    regions = regions.to(dev, torch.float64)
    grid = torch.arange(size, device=dev, dtype=torch.float64) / size - 0.5
    cx, cy, rw, rh, angle = (regions[:, i, None, None] for i in range(5))
    cos, sin = torch.cos(angle), torch.sin(angle)
    u, v = grid[None, None, :] * rw, grid[None, :, None] * rh
    # source coordinates in 1/32 pixels (OpenCV rounds them so), then integer part and fraction
    x = torch.round((cx + u * cos - v * sin) * WARP_SUBPIXELS).long()
    y = torch.round((cy + u * sin + v * cos) * WARP_SUBPIXELS).long()
    x0, y0 = torch.div(x, WARP_SUBPIXELS, rounding_mode="floor"), torch.div(y, WARP_SUBPIXELS, rounding_mode="floor")
    fx = ((x - x0 * WARP_SUBPIXELS).float() / WARP_SUBPIXELS)[..., None]
    fy = ((y - y0 * WARP_SUBPIXELS).float() / WARP_SUBPIXELS)[..., None]
    xs = torch.stack([x0, x0 + 1], -1)  # (K, S, S, 2)
    ys = torch.stack([y0, y0 + 1], -1)
    weight_x = torch.cat([1 - fx, fx], -1)
    weight_y = torch.cat([1 - fy, fy], -1)
    if not replicate:
        weight_x = weight_x * ((xs >= 0) & (xs < width))
        weight_y = weight_y * ((ys >= 0) & (ys < height))
    xs, ys = xs.clamp(0, width - 1), ys.clamp(0, height - 1)
    base = frame_index.to(dev).long()[:, None, None, None, None] * (height * width)
    index = base + ys[..., :, None] * width + xs[..., None, :]  # (K, S, S, 2, 2)
    pixels = frames.reshape(-1, 3)[index.reshape(-1)].reshape(k, size, size, 2, 2, 3).float()
    weights = (weight_y[..., :, None] * weight_x[..., None, :])[..., None]
    out = (pixels * weights).sum((3, 4))
    return torch.round(out).permute(0, 3, 1, 2)


def warp_regions_cv2(frames: np.ndarray, frame_index: list[int], regions: np.ndarray, size: int, replicate: bool):
    """CPU twin of :func:`sample_regions` with OpenCV, the calls MediaPipe's CPU ImageToTensor makes.

    (K, 3, size, size) float32, values 0..255. OpenCV is a dependency anyway and its fixed-point warp is
    much faster on a CPU than gathering in torch. Not bit-identical to the mediapipe package's crops (its
    bundled OpenCV rounds a little differently: about 10 % of pixels differ by 1-3 levels from
    :func:`sample_regions`); the landmarks agree to a few hundredths of a percent of the IOD either way.
    """
    import cv2

    border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
    corners = np.array([[0, size], [0, 0], [size, 0], [size, size]], np.float32)
    out = np.empty((len(regions), size, size, 3), np.uint8)
    for k, (i, (cx, cy, w, h, angle)) in enumerate(zip(frame_index, regions, strict=True)):
        box = cv2.boxPoints(((float(cx), float(cy)), (float(w), float(h)), float(angle) * 180.0 / math.pi))
        matrix = cv2.getPerspectiveTransform(box.astype(np.float32), corners)
        out[k] = cv2.warpPerspective(frames[i], matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float()


class TorchFaceMesh:
    """MediaPipe legacy FaceMesh (refine_landmarks=True) in torch, streaming over batches of frames.

    ``process_batch(frames)`` -> per frame, a list of (478, 3) normalised landmark arrays.
    """

    def __init__(
        self,
        max_faces: int = 4,
        static: bool = False,
        min_detection: float = 0.5,
        min_tracking: float = 0.5,
        full_range: str = "never",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        if full_range not in ("never", "fallback", "always"):
            raise ValueError(f"full_range: {full_range!r}; choose never, fallback or always")
        self.max_faces = max_faces
        self.static = static
        self.min_detection = min_detection
        self.min_tracking = min_tracking
        self.full_range = full_range
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype or torch.float32
        self._detector = self._net("face_detector_short")
        self._mesh = self._net("face_mesh_attention")
        self._full_net: GraphNet | None = None  # loaded on first use (most videos never need it)
        self._anchors = {}
        self._tracked: list[np.ndarray] = []

    def _net(self, name: str) -> GraphNet:
        if self.device.type == "cpu" and self.dtype == torch.float32:
            return load_cpu_net(name, MESH_TRACE_AFTER_FRAMES if name == "face_mesh_attention" else None)
        return _copy_to(name, self.device, self.dtype)

    def _crops(self, frames, frame_index: list[int], regions: np.ndarray, size: int, replicate: bool):
        """Rotated crops (K, 3, size, size) 0..255 on the mesh's device: OpenCV on the CPU, torch elsewhere."""
        if isinstance(frames, np.ndarray):
            return warp_regions_cv2(frames, frame_index, regions, size, replicate)
        return sample_regions(frames, torch.tensor(frame_index), torch.from_numpy(regions), size, replicate)

    @property
    def _full(self) -> GraphNet | None:
        if self.full_range == "never":
            return None
        if self._full_net is None:
            self._full_net = self._net("face_detector_full")
        return self._full_net

    def reset(self) -> None:
        """Forget the tracked faces (the next frame is detected afresh)."""
        self._tracked = []

    # ------------------------------------------------------------------ detection

    @torch.inference_mode()
    def detect(
        self, frames: torch.Tensor, net: GraphNet, min_score: float, frame_index: list[int] | None = None
    ) -> list[list[tuple]]:
        """BlazeFace on uint8 frames (B, H, W, 3) -> per frame [(box, keypoints, score)] normalised, best first.

        ``frame_index``: only these frames (without copying them out of ``frames``), in this order.
        """
        frame_index = list(range(frames.shape[0])) if frame_index is None else frame_index
        b, (_, height, width, _) = len(frame_index), frames.shape
        cfg = net.config
        size = cfg["input_size"]
        side = float(max(width, height))
        regions = np.array([[width / 2, height / 2, side, side, 0.0]] * b)
        pixels = self._crops(frames, frame_index, regions, size, replicate=False)
        raw, logits = net((pixels * (2.0 / 255.0) - 1.0).to(self.dtype))
        raw, logits = raw.float(), logits.float()
        key = cfg["name"]
        if key not in self._anchors:
            self._anchors[key] = ssd_anchors(size, cfg["strides"], cfg["anchors_per_cell"]).to(raw.device)
        anchors = self._anchors[key]
        scores = torch.sigmoid(logits[..., 0].clamp(-100, 100))
        centre = raw[..., :2] / size + anchors
        half = raw[..., 2:4] / size / 2
        boxes = torch.cat([centre - half, centre + half], dim=-1)
        keypoints = raw[..., 4:16].reshape(b, -1, 6, 2) / size + anchors[None, :, None, :]
        # letterbox -> frame: the square region around the frame's centre
        scale = torch.tensor([side / width, side / height], device=raw.device)
        offset = 0.5 - 0.5 * scale
        boxes = boxes * scale.repeat(2) + offset.repeat(2)
        keypoints = keypoints * scale + offset
        keep = (scores >= min_score) & (half[..., 0] >= 0) & (half[..., 1] >= 0)
        out = []
        keep_np, boxes_np, kps_np, scores_np = (t.cpu().numpy() for t in (keep, boxes, keypoints, scores))
        for i in range(b):
            idx = np.flatnonzero(keep_np[i])
            dets = weighted_nms(boxes_np[i, idx], kps_np[i, idx], scores_np[i, idx]) if len(idx) else []
            out.append(dets[: self.max_faces])
        return out

    # ------------------------------------------------------------------ landmarks

    @torch.inference_mode()
    def mesh(
        self, frames: torch.Tensor, frame_index: list[int], regions: list[np.ndarray]
    ) -> list[np.ndarray | None]:
        """Mesh each region (normalised xc, yc, w, h, rotation) of frame ``frame_index[k]``.

        Returns, per region, the (478, 3) normalised landmarks, or None when the face-presence score fails.
        """
        if not regions:
            return []
        _, height, width, _ = frames.shape
        reg = np.stack(regions)
        pixel_regions = np.stack(
            [reg[:, 0] * width, reg[:, 1] * height, reg[:, 2] * width, reg[:, 3] * height, reg[:, 4]], 1
        )
        pixels = self._crops(frames, frame_index, pixel_regions, MESH_SIZE, replicate=True)
        outputs = self._mesh((pixels / 255.0).to(self.dtype))
        mesh, lips, left_eye, right_eye, left_iris, right_iris, flag = (o.float().flatten(1) for o in outputs)
        points = mesh.reshape(-1, 468, 3) / MESH_SIZE
        refined = torch.cat([points, torch.zeros(len(reg), 10, 3, device=points.device)], dim=1)
        for index, part in ((LIPS, lips), (LEFT_EYE, left_eye), (RIGHT_EYE, right_eye)):
            refined[:, list(index), :2] = part.reshape(len(reg), -1, 2) / MESH_SIZE
        for index, part, eye in ((LEFT_IRIS, left_iris, LEFT_EYE), (RIGHT_IRIS, right_iris, RIGHT_EYE)):
            refined[:, list(index), :2] = part.reshape(len(reg), -1, 2) / MESH_SIZE
            refined[:, list(index), 2] = points[:, list(eye[:EYE_CONTOUR]), 2].mean(1, keepdim=True)
        presence = torch.sigmoid(flag[:, 0]).cpu().numpy()
        local = refined.cpu().numpy().astype(np.float64)
        out: list[np.ndarray | None] = []
        for k in range(len(reg)):
            if not presence[k] > self.min_tracking:
                out.append(None)
                continue
            xc, yc, w, h, angle = reg[k]
            x, y = local[k, :, 0] - 0.5, local[k, :, 1] - 0.5
            cos, sin = math.cos(angle), math.sin(angle)
            projected = np.stack(
                [(cos * x - sin * y) * w + xc, (sin * x + cos * y) * h + yc, local[k, :, 2] * w], axis=1
            )
            out.append(projected.astype(np.float32))
        return out

    # ------------------------------------------------------------------ streaming

    def process_batch(self, frames: np.ndarray | torch.Tensor) -> list[list[np.ndarray]]:
        """uint8 RGB frames (B, H, W, 3) -> per frame, the normalised (478, 3) landmarks of each face."""
        if self.device.type == "cpu":
            frames = np.ascontiguousarray(frames.cpu().numpy() if isinstance(frames, torch.Tensor) else frames)
        else:
            frames = torch.as_tensor(frames).to(self.device)
        b, height, width, _ = frames.shape
        detections = self.detect(frames, self._detector, self.min_detection)
        if self.static:
            regions = [regions_from_detections(d, width, height) for d in detections]
            flat = [r for rs in regions for r in rs]
            owner = [i for i, rs in enumerate(regions) for _ in rs]
            meshes = self.mesh(frames, owner, flat)
            results: list[list[np.ndarray]] = [[] for _ in range(b)]
            for i, m in zip(owner, meshes, strict=True):
                if m is not None:
                    results[i].append(m)
            return self._add_small_faces(frames, results)
        results = []
        for i in range(b):
            regions = self._tracked
            if len(regions) < self.max_faces:  # room for more faces: this frame's detections join the tracked
                regions = associate(regions_from_detections(detections[i], width, height), regions)
            faces = [m for m in self.mesh(frames, [i] * len(regions), regions) if m is not None]
            results.append(self._add_small_faces(frames[i : i + 1], [faces])[0])
            self._tracked = [region_from_landmarks(f, width, height) for f in results[-1]][: self.max_faces]
        return results

    def _add_small_faces(self, frames: torch.Tensor, results: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        """Full-range detector on frames without a face ('fallback') or on every frame ('always')."""
        if self._full is None:
            return results
        need = [i for i, faces in enumerate(results) if self.full_range == "always" or not faces]
        if not need:
            return results
        _, height, width, _ = frames.shape
        detections = self.detect(frames, self._full, self._full.config["min_score"], frame_index=need)
        owner = [i for j, i in enumerate(need) for _ in detections[j]]
        regions = [region for dets in detections for region in regions_from_detections(dets, width, height)]
        known = {i: [np.concatenate([f[:, :2].min(0), f[:, :2].max(0)]) for f in results[i]] for i in need}
        for i, face in zip(owner, self.mesh(frames, owner, regions), strict=True):  # all frames' faces at once
            if face is None:
                continue
            box = np.concatenate([face[:, :2].min(0), face[:, :2].max(0)])
            if any(_iou(box, k) > 0.2 for k in known[i]):
                continue
            known[i].append(box)
            results[i].append(face)
        return results


def _copy_to(name: str, device: torch.device, dtype: torch.dtype) -> GraphNet:
    """The network on a device / in a dtype (a fresh copy: the cached CPU ones stay as they are)."""
    return GraphNet(DATA_DIR / f"{name}.safetensors").eval().to(device=device, dtype=dtype)
