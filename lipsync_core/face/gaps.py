"""Which face-less frames may be filled in: short tracker dropouts within one shot, nothing else.

The tracker interpolates a face over a short run of frames where it found none only when those
frames still show what their neighbours show (the face was there, the detector just missed it:
motion blur, a turn, a compression smear). A black frame, a cut to another shot, or a hand or
object in front of the face changes the picture, and such frames pass through untouched.

"Shows the same" is measured on small grey thumbnails ("signatures"): of the face region (the
face's box, interpolated over the gap) and of the whole frame. The statistic is the share of
thumbnail pixels that changed by more than a tenth of the grey range. It is compared with what
this video itself does over the same number of frames (the 90th percentile between frames where
the face was found), so a calm interview and a lively performance are each judged by their own
motion; a floor keeps a still video from refusing everything and a ceiling means a frame that
changed half its pixels is never filled in.
"""

from __future__ import annotations

import cv2
import numpy as np

SIGNATURE_SIZE = 24  # side of the grey thumbnails (px)
CHANGE_LEVEL = 26  # a thumbnail pixel changed when it moved by more than this (of 255): a tenth of the range
CONTENT_MARGIN = 1.5  # x this video's own 90th-percentile change over the same distance ...
CONTENT_FLOOR = 0.15  # ... but never stricter than this share of changed pixels ...
CONTENT_CEIL = 0.5  # ... nor more lenient than this
BOX_MARGIN = 0.1  # the face region is the landmarks' box grown by this share on each side
WORK_LONG_SIDE = 1024  # frames are examined at most this large (grey), so 4K costs little
BASELINE_PAIRS = 2000  # frame pairs sampled for the video's own change statistic


def grey_small(frame: np.ndarray) -> tuple[np.ndarray, float]:
    """RGB uint8 frame -> (grey uint8 image with the long side <= WORK_LONG_SIDE, its scale)."""
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    scale = min(1.0, WORK_LONG_SIDE / max(grey.shape))
    if scale < 1.0:
        size = (max(round(grey.shape[1] * scale), 1), max(round(grey.shape[0] * scale), 1))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey, scale


def signature(grey: np.ndarray, box: np.ndarray | None = None) -> np.ndarray:
    """The SIGNATURE_SIZE^2 grey thumbnail of an image, or of the region ``box`` (x0, y0, x1, y1) grown by
    BOX_MARGIN and clipped to the image (uint8, flattened)."""
    if box is not None:
        h, w = grey.shape
        x0, y0, x1, y1 = (float(v) for v in box)
        mx, my = BOX_MARGIN * (x1 - x0), BOX_MARGIN * (y1 - y0)
        xa, xb = int(np.clip(np.floor(x0 - mx), 0, w - 1)), int(np.clip(np.ceil(x1 + mx), 1, w))
        ya, yb = int(np.clip(np.floor(y0 - my), 0, h - 1)), int(np.clip(np.ceil(y1 + my), 1, h))
        grey = grey[ya : max(yb, ya + 1), xa : max(xb, xa + 1)]
    return cv2.resize(grey, (SIGNATURE_SIZE, SIGNATURE_SIZE), interpolation=cv2.INTER_AREA).reshape(-1)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of signature pixels that differ by more than CHANGE_LEVEL (along the last axis)."""
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)) > CHANGE_LEVEL).mean(axis=-1)


class ContentLog:
    """Signatures of every frame, collected while the tracker streams, for :meth:`fillable`.

    Memory: two 576-byte signatures per frame, plus grey copies of the frames of the current
    face-less run, only while it is no longer than ``max_pending`` (longer runs are never filled).
    """

    def __init__(self, max_pending: int) -> None:
        self.max_pending = int(max_pending)
        self.whole: list[np.ndarray] = []
        self.face: list[np.ndarray | None] = []
        self.detected: list[bool] = []
        self._pending: list[tuple[int, np.ndarray]] = []
        self._overflow = False
        self._last: tuple[int, np.ndarray] | None = None  # (index, box in work pixels) of the last face
        self._baselines: dict[tuple[str, int], float] = {}

    def add(self, frame: np.ndarray, box: np.ndarray | None) -> None:
        """One RGB uint8 frame and the box of the chosen face in it (None: no face)."""
        grey, scale = grey_small(frame)
        index = len(self.whole)
        self.whole.append(signature(grey))
        self.detected.append(box is not None)
        self._baselines.clear()
        if box is None:
            self.face.append(None)
            if len(self._pending) < self.max_pending and not self._overflow:
                self._pending.append((index, grey))
            else:
                self._pending, self._overflow = [], True
            return
        box = np.asarray(box, np.float64) * scale
        self.face.append(signature(grey, box))
        self._resolve(index, box)
        self._last = (index, box)

    def close(self) -> None:
        """End of the video: a face-less run at the end is examined in the last face's box."""
        self._resolve(None, None)

    def _resolve(self, index: int | None, box: np.ndarray | None) -> None:
        """Signatures of the pending face-less frames, in the face box interpolated across the run."""
        for j, grey in self._pending:
            if self._last is not None and box is not None:
                i0, b0 = self._last
                w = (j - i0) / (index - i0)
                region = (1 - w) * b0 + w * box
            else:
                region = box if box is not None else (self._last[1] if self._last is not None else None)
            if region is not None:
                self.face[j] = signature(grey, region)
        self._pending, self._overflow = [], False

    def _baseline(self, kind: str, distance: int) -> float:
        """90th percentile of the change between frames ``distance`` apart where the face was found (0 if none)."""
        key = (kind, distance)
        if key not in self._baselines:
            sigs = self.face if kind == "face" else self.whole
            has_face = np.array(self.detected)
            t = np.flatnonzero(has_face[distance:] & has_face[:-distance]) + distance if distance < len(sigs) else []
            if len(t) > BASELINE_PAIRS:
                t = t[np.linspace(0, len(t) - 1, BASELINE_PAIRS).astype(int)]
            if len(t):
                later = np.stack([sigs[i] for i in t])
                earlier = np.stack([sigs[i - distance] for i in t])
                self._baselines[key] = float(np.percentile(changed(later, earlier), 90))
            else:
                self._baselines[key] = 0.0
        return self._baselines[key]

    def limit(self, kind: str, distance: int) -> float:
        """Largest change over ``distance`` frames that still counts as the same picture."""
        return float(np.clip(CONTENT_MARGIN * self._baseline(kind, max(int(distance), 1)), CONTENT_FLOOR,
                             CONTENT_CEIL))  # fmt: skip

    def fillable(self, start: int, stop: int) -> tuple[bool, str]:
        """May the face-less frames [start, stop) be filled in from their neighbours? (yes/no, why not)."""
        n = len(self.whole)
        before = start - 1 if start > 0 and self.detected[start - 1] else None
        after = stop if stop < n and self.detected[stop] else None
        neighbours = [i for i in (before, after) if i is not None]
        if not neighbours or any(self.face[g] is None for g in range(start, stop)):
            return False, "not examined"
        if before is not None and after is not None:
            k = after - before
            if (changed(self.whole[before], self.whole[after]) > self.limit("whole", k)
                    or changed(self.face[before], self.face[after]) > self.limit("face", k)):  # fmt: skip
                return False, f"a cut between frames {before} and {after}"
        for g in range(start, stop):
            k = min(abs(g - i) for i in neighbours)
            face = min(float(changed(self.face[g], self.face[i])) for i in neighbours)
            whole = min(float(changed(self.whole[g], self.whole[i])) for i in neighbours)
            if face > self.limit("face", k) or whole > self.limit("whole", k):
                return False, "the picture changed: a cut, a black frame, or something in front of the face"
        return True, ""
