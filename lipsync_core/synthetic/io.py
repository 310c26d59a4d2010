"""Writing and reading puppet clips in the dataset layout (see docs/PUPPET_WORLD.md).

DIR/<speaker_id>/<clip_id>.mp4        H.264 (yuv420p) video with the speech muxed as AAC: a plain video
DIR/<speaker_id>/<clip_id>.wav        the speech, 16-bit PCM at the TTS rate (lossless twin of the AAC track)
DIR/<speaker_id>/<clip_id>.json       fps, frame count, size, sentence, speaker (face, voice, style), phonemes
DIR/<speaker_id>/<clip_id>.truth.npz  landmarks (T, 478, 3) float32, articulation, head, mouth geometry
DIR/speakers.json                     every speaker of the set
"""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import soundfile as sf
from av.codec.context import Flags

from ..types import LipSyncInputError
from .articulation import CHANNELS
from .clip import PuppetClip, mouth_geometry

FORMAT_VERSION = 1


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _yuv_frame(rgb: np.ndarray) -> av.VideoFrame:
    """RGB -> yuv420p (BT.601, limited range) by OpenCV, every byte of the frame written.

    Handing rgb24 to PyAV lets swscale convert into a frame whose row padding is left uninitialised,
    and the encoded bytes then depend on what the process did before; this way they do not.
    """
    h, w = rgb.shape[:2]
    yuv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)
    frame = av.VideoFrame(w, h, "yuv420p")
    planes = (yuv[:h].reshape(h, w), yuv[h:h + h // 4].reshape(h // 2, w // 2),
              yuv[h + h // 4:].reshape(h // 2, w // 2))
    for plane, data in zip(frame.planes, planes, strict=True):
        buf = np.zeros((plane.height, plane.line_size), np.uint8)
        buf[:, : data.shape[1]] = data
        plane.update(buf)
    return frame


def encode_mp4(
    frames: np.ndarray, fps: float, audio: np.ndarray | None, sample_rate: int, crf: int = 20, preset: str = "veryfast"
) -> bytes:
    """H.264 + AAC mp4 bytes; single-threaded and bit-exact flags, so the same input gives the same bytes."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4", options={"fflags": "+bitexact"}) as out:
        vs = out.add_stream("libx264", rate=_fps_fraction(fps))
        vs.width, vs.height = int(frames.shape[2]), int(frames.shape[1])
        vs.pix_fmt = "yuv420p"
        # mbtree off: with it, libx264 (as bundled with PyAV) gave different bytes for the same frames depending
        # on what the process had allocated before (uninitialised memory in its lookahead); off, it is exact
        vs.options = {"crf": str(crf), "preset": preset, "threads": "1", "x264-params": "mbtree=0"}
        vs.codec_context.thread_count = 1
        vs.codec_context.flags |= Flags.bitexact
        astream = None
        if audio is not None and len(audio):
            astream = out.add_stream("aac", rate=int(sample_rate))
            astream.layout = "mono"
            astream.bit_rate = 64000
            astream.codec_context.flags |= Flags.bitexact
        rate = _fps_fraction(fps)
        for k, frame in enumerate(frames):
            vf = _yuv_frame(frame)
            vf.pts, vf.time_base = k, 1 / rate
            for packet in vs.encode(vf):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if astream is not None:
            pcm = np.clip(np.asarray(audio, np.float32), -1, 1)[None]
            chunk = 1024
            for i in range(0, pcm.shape[1], chunk):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, i:i + chunk]), format="fltp", layout="mono")
                af.sample_rate = int(sample_rate)
                af.pts = i
                af.time_base = Fraction(1, int(sample_rate))
                for packet in astream.encode(af):
                    out.mux(packet)
            for packet in astream.encode():
                out.mux(packet)
    return buf.getvalue()


def clip_metadata(clip: PuppetClip, clip_id: str) -> dict:
    h, w = clip.frames.shape[1:3]
    return {
        "format": "stylelipsync-puppet",
        "version": FORMAT_VERSION,
        "clip_id": clip_id,
        "fps": clip.fps,
        "n_frames": clip.n_frames,
        "width": int(w),
        "height": int(h),
        "sample_rate": clip.sample_rate,
        "n_samples": len(clip.audio),
        "seed": clip.seed,
        "sentence": clip.sentence,
        "speaker": clip.speaker.to_dict(),
        "rendition_style": clip.style.to_dict(),
        "articulation_channels": list(CHANNELS),
        "phonemes": [{"symbol": p.symbol, "start": round(p.start, 6), "end": round(p.end, 6)} for p in clip.phonemes],
        "frame_time": "frame k shows time k / fps",
    }


def write_clip(clip: PuppetClip, directory: str | Path, clip_id: str) -> dict[str, Path]:
    """Write one clip in the layout above under ``directory/<speaker_id>/``; returns the paths written."""
    folder = Path(directory) / clip.speaker.speaker_id
    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / f"{clip_id}{ext}" for k, ext in
             (("mp4", ".mp4"), ("wav", ".wav"), ("json", ".json"), ("truth", ".truth.npz"))}
    paths["mp4"].write_bytes(encode_mp4(clip.frames, clip.fps, clip.audio, clip.sample_rate))
    sf.write(paths["wav"], clip.audio, clip.sample_rate, subtype="PCM_16")
    paths["json"].write_text(json.dumps(clip_metadata(clip, clip_id), indent=1))
    geometry = mouth_geometry(clip.landmarks)
    buf = io.BytesIO()
    # landmarks rounded to 1/64 px: far below any tracker's error, and the file compresses to about half
    landmarks = (np.round(clip.landmarks * 64.0) / 64.0).astype(np.float32)
    pose = {} if clip.head_pose is None else {"head_pose": clip.head_pose}  # absent: the head did not turn
    np.savez_compressed(buf, landmarks=landmarks, articulation=clip.articulation, head=clip.head, blink=clip.blink,
                        **pose, **{f"mouth_{k}": v for k, v in geometry.items()})
    paths["truth"].write_bytes(buf.getvalue())
    return paths


def read_truth(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a ``.truth.npz`` (landmarks, articulation, head, mouth_*)."""
    path = Path(path)
    if not path.exists():
        raise LipSyncInputError(f"truth file {path} does not exist; give the .truth.npz written next to the clip")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Decode an mp4 to (T, H, W, 3) uint8 RGB frames and its fps."""
    with av.open(str(path)) as inp:
        stream = inp.streams.video[0]
        fps = float(stream.average_rate)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in inp.decode(stream)])
    return frames, fps


def list_clips(directory: str | Path) -> list[dict]:
    """Every clip of a generated dataset: manifest rows with absolute ``video``, ``wav``, ``json``, ``truth`` paths."""
    root = Path(directory)
    manifest = root / "manifest.json"
    if not manifest.exists():
        raise LipSyncInputError(
            f"{root} has no manifest.json; give a folder written by python -m lipsync_core.synthetic"
        )
    rows = []
    for row in json.loads(manifest.read_text())["clips"]:
        base = root / row["speaker_id"] / row["clip_id"]
        rows.append({**row, "video": base.with_suffix(".mp4"), "wav": base.with_suffix(".wav"),
                     "json": base.with_suffix(".json"), "truth": Path(f"{base}.truth.npz")})
    return rows
