"""``prepare``: a folder of videos with audio -> a training dataset (see :mod:`.dataset` for the layout).

Per clip: track the face (the pipeline's tracker, streamed), warp crops at S, compute the audio features,
keep the raw landmarks, pose and usable flags. Puppet clips and real mp4 files go through the same path;
``landmarks="truth"`` reads a puppet clip's exact mesh (``.truth.npz``) instead of tracking (fast, for tests).

Resumable: a clip whose ``.json`` exists is skipped; files are written to a temporary name and renamed.
Parallel: ``workers`` processes. Bad or unreadable files are skipped with their reason, logged and counted.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..types import LipSyncInputError
from .dataset import CLIPS_DIR, FORMAT, FORMAT_VERSION, INDEX_FILE, clip_key, read_meta, wave_int16

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
LANDMARK_SOURCES = ("track", "truth", "auto")


@dataclass(frozen=True)
class PrepareOptions:
    crop_size: int = 256
    landmarks: str = "track"  # track | truth | auto (truth when a .truth.npz is next to the video)
    n_mels: int = 80
    context: int = 4
    max_gap_frames: int | None = None
    speaker: str | None = None  # every clip this one speaker (default: the video's folder, see ``speaker_of``)


def find_videos(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise LipSyncInputError(f"videos: {root} is neither a folder nor a file; give the folder of your clips.")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())


def speaker_of(video: Path, root: Path) -> str:
    """The speaker is the video's folder relative to the root (puppet layout DIR/<speaker>/<clip>.mp4)."""
    try:
        rel = video.parent.relative_to(root)
    except ValueError:
        rel = Path()
    return str(rel).replace(os.sep, "_") if str(rel) not in ("", ".") else video.stem


def _truth_path(video: Path) -> Path:
    return video.with_suffix(".truth.npz")


def _track_from_landmarks(landmarks: np.ndarray, fps: float, crop_size: int, frame_size: tuple[int, int]):
    from ..face import crop_transforms_from_landmarks
    from ..motion import procrustes_align
    from ..types import FaceTrack

    n = len(landmarks)
    return FaceTrack(
        fps=fps, frame_size=frame_size, landmarks=landmarks.astype(np.float32), detected=np.ones(n, bool),
        usable=np.ones(n, bool),
        crop_transforms=crop_transforms_from_landmarks(landmarks, crop_size).astype(np.float32),
        rotations=procrustes_align(landmarks).rotation.astype(np.float32), crop_size=crop_size, backend="truth",
    )


def prepare_clip(video: Path, root: Path, out_dir: Path, options: PrepareOptions) -> dict:
    """Prepare one video; returns its metadata (raises on bad input)."""
    import torch

    from ..audio import load_audio_file
    from ..media import VideoFileFrames

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one of ``workers`` processes (restored: with one worker this is the caller's)
    try:
        speaker = options.speaker or speaker_of(video, root)
        source = VideoFileFrames(video, str(video))
        landmarks = None
        if options.landmarks == "truth" or (options.landmarks == "auto" and _truth_path(video).is_file()):
            from ..synthetic.io import read_truth

            landmarks = read_truth(_truth_path(video))["landmarks"]
        # Audio: a lossless .wav twin next to the video wins over the compressed track inside it.
        wav = video.with_suffix(".wav")
        return prepare_source(source, lambda: load_audio_file(wav if wav.is_file() else video),
                              clip_key(speaker, video.stem), speaker, out_dir, options, str(video), landmarks)
    finally:
        torch.set_num_threads(before)


def prepare_source(source, load_wave, key: str, speaker: str, out_dir: Path, options: PrepareOptions, name: str,
                   landmarks: np.ndarray | None = None) -> dict:
    """Prepare one clip from any frame source (a file, frames in memory) and ``load_wave()`` (16 kHz mono, read
    after tracking); ``landmarks``: a puppet's exact mesh instead of tracking. Returns the clip's metadata."""
    from .. import stages
    from ..audio import compute_features
    from ..face import warp_to_crops

    clips_dir = out_dir / CLIPS_DIR
    t0 = time.perf_counter()
    if landmarks is not None:
        track = _track_from_landmarks(landmarks, source.fps, options.crop_size, (0, 0))
        source.num_frames = len(track)
    else:
        tracker_options = {} if options.max_gap_frames is None else {"max_gap_frames": options.max_gap_frames}
        track = stages.track(source, options.crop_size, what=name, **tracker_options)
    wave = load_wave()
    feats = compute_features(wave, source.fps, len(track), n_mels=options.n_mels, context=options.context,
                             name=name)
    crops = np.empty((len(track), options.crop_size, options.crop_size, 3), np.uint8)
    done = 0
    for chunk in source.iter_chunks(64):
        n = min(len(chunk), len(track) - done)
        if n <= 0:
            break
        c = warp_to_crops(chunk[:n], track.crop_transforms[done:done + n], options.crop_size)
        crops[done:done + n] = np.round(c * 255.0).astype(np.uint8)
        done += n
    if done < len(track):
        raise LipSyncInputError(f"{name}: decoded {done} frames for crops but the track has {len(track)}.")
    meta = {
        "format": FORMAT, "version": FORMAT_VERSION, "key": key, "speaker": speaker, "source": name,
        "fps": float(source.fps), "frames": len(track), "usable_frames": int(track.usable.sum()),
        "detected_frames": int(track.detected.sum()), "crop_size": options.crop_size,
        "landmarks": "truth" if landmarks is not None else track.backend, "feature_spec": feats.spec.to_dict(),
        "notes": list(track.notes), "seconds": round(time.perf_counter() - t0, 3),
    }
    write_clip(clips_dir, meta, {
        "crops": crops, "landmarks": track.landmarks.astype(np.float32), "detected": track.detected,
        "usable": track.usable, "crop_transforms": track.crop_transforms.astype(np.float32),
        "rotations": track.rotations.astype(np.float32), "features": feats.features.astype(np.float32),
        "silence": feats.silence if feats.silence is not None else np.zeros(len(track), bool),
        "wave": wave_int16(wave)})
    return meta


def write_clip(clips_dir: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """A clip's arrays, then its metadata (a clip is done when its .json exists), each renamed into place."""
    key = meta["key"]
    clips_dir.mkdir(parents=True, exist_ok=True)
    tmp = clips_dir / f"{key}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, clips_dir / f"{key}.npz")
    tmp_json = clips_dir / f"{key}.tmp.json"
    tmp_json.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_json, clips_dir / f"{key}.json")


def _worker(video: str, root: str, out_dir: str, options: PrepareOptions) -> tuple[str, dict | None, str | None]:
    try:
        return video, prepare_clip(Path(video), Path(root), Path(out_dir), options), None
    except LipSyncInputError as exc:
        return video, None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a bad file must not stop the run; its reason is logged
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return video, None, f"{type(exc).__name__}: {tb}"


def prepare(
    videos: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: PrepareOptions | None = None,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Prepare every video under ``videos`` into ``out_dir``; returns the summary written to index.json."""
    from tqdm import tqdm

    options = options or PrepareOptions()
    if options.landmarks not in LANDMARK_SOURCES:
        raise LipSyncInputError(f"--landmarks {options.landmarks!r}: use one of {LANDMARK_SOURCES}.")
    root = Path(videos)
    out = Path(out_dir)
    (out / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
    files = find_videos(root)
    if not files:
        raise LipSyncInputError(f"videos: no video files ({', '.join(VIDEO_EXTENSIONS)}) under {root}.")
    scan_root = root if root.is_dir() else root.parent
    todo, already = [], 0
    for f in files:
        key = clip_key(speaker_of(f, scan_root), f.stem)
        if (out / CLIPS_DIR / f"{key}.json").is_file() and (out / CLIPS_DIR / f"{key}.npz").is_file():
            already += 1
        else:
            todo.append(f)
    skipped: list[dict] = []
    done = 0
    t0 = time.perf_counter()
    log = out / "prepare_log.jsonl"
    with tqdm(total=len(todo), desc="prepare", unit="clip", disable=not progress) as bar, log.open("a") as logf:

        def record(video: str, meta: dict | None, error: str | None) -> None:
            nonlocal done
            if error is None:
                done += 1
                logf.write(json.dumps({"video": video, "ok": True, "frames": meta["frames"]}) + "\n")
            else:
                skipped.append({"video": video, "reason": error})
                logf.write(json.dumps({"video": video, "ok": False, "reason": error}) + "\n")
                tqdm.write(f"skipped {video}: {error}")
            logf.flush()
            bar.update(1)
            bar.set_postfix(ok=done, skipped=len(skipped))

        if workers <= 1:
            for f in todo:
                record(*_worker(str(f), str(scan_root), str(out), options))
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(_worker, str(f), str(scan_root), str(out), options) for f in todo]
                for fut in as_completed(futures):
                    record(*fut.result())
    clips = [read_meta(p.with_suffix(".npz")) for p in sorted((out / CLIPS_DIR).glob("*.json"))
             if not p.name.endswith(".tmp.json")]
    summary = {
        "videos_found": len(files), "already_done": already, "prepared_now": done, "skipped": len(skipped),
        "skipped_files": skipped, "clips": len(clips), "frames": int(sum(c["frames"] for c in clips)),
        "speakers": sorted({c["speaker"] for c in clips}), "crop_size": options.crop_size,
        "seconds": round(time.perf_counter() - t0, 2),
        "clip_index": [{k: c[k] for k in ("key", "speaker", "source", "frames", "usable_frames")} for c in clips],
    }
    (out / INDEX_FILE).write_text(json.dumps(summary, indent=1))
    print(f"prepare: {done} prepared, {already} already done, {len(skipped)} skipped "
          f"({summary['clips']} clips, {summary['frames']} frames in {out}) in {summary['seconds']} s")
    return summary
