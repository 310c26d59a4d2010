"""The prepared training dataset: one ``.npz`` (+ ``.json``) per clip, written by ``prepare``.

DATA/clips/<key>.npz   crops uint8 [T,S,S,3], landmarks [T,478,3] (image pixels), detected/usable [T],
                       crop_transforms [T,2,3], rotations [T,3,3], features [T,D], silence [T],
                       wave int16 [N] (16 kHz mono)
DATA/clips/<key>.json  speaker, source path, fps, frame count, crop size, feature spec (written last:
                       a clip is done when its json exists, which makes ``prepare`` resumable)
DATA/index.json        every done clip + the skipped files of the last run, with reasons
DATA/mouth_model.safetensors   the fitted mouth basis (``fit-basis``)

Raw landmarks are kept, so mouth params are always recomputed with the current basis exactly the way
inference computes them (:class:`lipsync_core.types.FaceAnalysis`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import TARGET_RATE
from ..motion import MouthModel
from ..types import FaceAnalysis, FaceTrack, FeatureSpec, LipSyncInputError

CLIPS_DIR = "clips"
INDEX_FILE = "index.json"
BASIS_FILE = "mouth_model.safetensors"
FORMAT = "stylelipsync-train-clip"
FORMAT_VERSION = 1


def clip_key(speaker: str, stem: str) -> str:
    """A file-name-safe key that keeps the speaker in front (sorting groups a speaker's clips)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{speaker}__{stem}")
    return safe


@dataclass
class ClipData:
    """One prepared clip in memory (crops only when asked for)."""

    key: str
    speaker: str
    fps: float
    landmarks: np.ndarray
    detected: np.ndarray
    usable: np.ndarray
    crop_transforms: np.ndarray
    rotations: np.ndarray
    features: np.ndarray
    silence: np.ndarray
    wave: np.ndarray  # float32 16 kHz
    crop_size: int
    spec: FeatureSpec
    crops: np.ndarray | None = None  # uint8 [T,S,S,3]

    def __len__(self) -> int:
        return int(self.landmarks.shape[0])

    def track(self) -> FaceTrack:
        return FaceTrack(
            fps=self.fps, frame_size=(0, 0), landmarks=self.landmarks, detected=self.detected, usable=self.usable,
            crop_transforms=self.crop_transforms, rotations=self.rotations, crop_size=self.crop_size,
        )

    def analyse(self, mouth: MouthModel) -> FaceAnalysis:
        """Mouth params, pose, identity and openness exactly as the pipeline computes them at inference."""
        return FaceAnalysis.of(self.track(), mouth)


def clip_paths(data_dir: str | os.PathLike) -> list[Path]:
    """The .npz of every finished clip (its .json exists), sorted by key."""
    folder = Path(data_dir) / CLIPS_DIR
    if not folder.is_dir():
        raise LipSyncInputError(f"data: {data_dir} has no '{CLIPS_DIR}' folder; run `prepare` on your videos first.")
    done = sorted(p.with_suffix(".npz") for p in folder.glob("*.json"))
    return [p for p in done if p.is_file()]


def merge_prepared(sources: Sequence[str | os.PathLike], out: str | os.PathLike,
                   basis_from: str | os.PathLike | None = None) -> Path:
    """One prepared folder holding the finished clips of ``sources`` (hard links where the file system allows,
    else copies), for a stage that trains on more footage than the others: the demo recipe's stage 1 sees
    speakers the renderer does not. The mouth basis is ``basis_from``'s (a stage must predict in the basis the
    rest of the models share). Two sources with a clip of the same key are refused."""
    out = Path(out)
    clips_out = out / CLIPS_DIR
    clips_out.mkdir(parents=True, exist_ok=True)
    seen: dict[str, Path] = {}
    for source in sources:
        for npz in clip_paths(source):
            if npz.stem in seen:
                raise LipSyncInputError(f"data: clip {npz.stem} is in both {seen[npz.stem]} and {source}; merge "
                                        "prepared folders of different speakers.")
            seen[npz.stem] = Path(source)
            for part in (npz, npz.with_suffix(".json")):
                target = clips_out / part.name
                if target.exists():
                    continue
                try:
                    os.link(part, target)
                except OSError:
                    shutil.copyfile(part, target)
    if basis_from is not None:
        shutil.copyfile(basis_path(basis_from), basis_path(out))
    return out


def read_meta(npz_path: Path) -> dict:
    return json.loads(npz_path.with_suffix(".json").read_text())


def load_clip(npz_path: str | os.PathLike, with_crops: bool = False) -> ClipData:
    path = Path(npz_path)
    meta = read_meta(path)
    with np.load(path, allow_pickle=False) as z:
        return ClipData(
            key=meta["key"],
            speaker=meta["speaker"],
            fps=float(meta["fps"]),
            landmarks=z["landmarks"].astype(np.float32),
            detected=z["detected"].astype(bool),
            usable=z["usable"].astype(bool),
            crop_transforms=z["crop_transforms"].astype(np.float32),
            rotations=z["rotations"].astype(np.float32),
            features=z["features"].astype(np.float32),
            silence=z["silence"].astype(bool),
            wave=z["wave"].astype(np.float32) / 32767.0,
            crop_size=int(meta["crop_size"]),
            spec=FeatureSpec.from_dict(meta["feature_spec"]),
            crops=z["crops"] if with_crops else None,
        )


def load_dataset(data_dir: str | os.PathLike, with_crops: bool = False, min_frames: int = 1) -> list[ClipData]:
    """Every finished clip of a prepared folder; clips shorter than ``min_frames`` usable frames are left out."""
    clips = [load_clip(p, with_crops) for p in clip_paths(data_dir)]
    clips = [c for c in clips if int(c.usable.sum()) >= min_frames]
    if not clips:
        raise LipSyncInputError(f"data: {data_dir} holds no usable prepared clip; check its index.json for skips.")
    specs = {json.dumps(c.spec.to_dict(), sort_keys=True) for c in clips}
    if len(specs) > 1:
        raise LipSyncInputError(f"data: {data_dir} mixes audio feature specs; prepare every clip with one spec.")
    return clips


def basis_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / BASIS_FILE


def load_basis(path: str | os.PathLike) -> MouthModel:
    path = Path(path)
    if path.is_dir():
        path = path / BASIS_FILE
    if not path.is_file():
        raise LipSyncInputError(f"mouth basis: {path} does not exist; run `fit-basis` on the training data first.")
    return MouthModel.load(path)


def by_speaker(clips: list[ClipData]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        out.setdefault(c.speaker, []).append(i)
    return out


def wave_int16(wave: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(wave, np.float32), -1, 1) * 32767.0).round().astype(np.int16)


SAMPLE_RATE = TARGET_RATE
