"""A battery of bad and odd inputs against the command line and the nodes (issue 11).

Every CLI case asserts: the exit code; on failure exactly one error line that names the input and
says what to do, no traceback, and no output or partial file left anywhere; every input file
byte-identical afterwards; on success the frame count and duration the length policy promises and
the input's frame size. The seven failures of the issue each have a named test below the battery.

Inputs are tiny (8-12 frames, 64-257 px, three 4K frames) and the models are tiny random ones, so
each case runs in about half a second in-process; two cases run the real ``python -m lipsync_core``.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
import skimage.data
import soundfile as sf
import torch

from lipsync_core.cli import main
from lipsync_core.media import VideoWriter
from lipsync_core.models.io import save_model
from tests.tiny_models import save_models, speechlike, tiny_models

FPS = 25.0
VIDEO_FRAMES = 8  # face.mp4
AUDIO_FRAMES = 12  # speech.wav lasts 12 frames at 25 fps
REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "lipsync_core" / "assets" / "demo"


# ----------------------------------------------------------------------------- inputs


def face_frames(n: int, width: int = 128, height: int = 128, mirror: bool = False) -> np.ndarray:
    """The astronaut's face (cropped to fill the frame) drifting slowly: uint8 [n, height, width, 3]."""
    face = skimage.data.astronaut()[20:250, 110:340]
    if mirror:
        face = np.ascontiguousarray(face[:, ::-1])
    base = cv2.resize(face, (width, height), interpolation=cv2.INTER_AREA)
    moves = [np.float32([[1, 0, 0.4 * i], [0, 1, -0.25 * i]]) for i in range(n)]
    return np.stack([cv2.warpAffine(base, m, (width, height), borderMode=cv2.BORDER_REFLECT) for m in moves])


def write_video(path: Path, frames: np.ndarray, fps: float = FPS, sound: bool = True) -> Path:
    audio = speechlike(len(frames) / fps, 44100) if sound else None
    with VideoWriter(path, fps, audio=audio, sample_rate=44100 if sound else None) as writer:
        writer.write(frames)
    return path


def write_sound_only_mp4(path: Path) -> Path:
    """An .mp4 holding sound but no picture (a video stream that never got a frame is dropped by the muxer)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(speechlike(0.2, 16000)[None], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Every input file of the battery, in a folder whose name has a space and a non-ASCII letter."""
    root = tmp_path_factory.mktemp("battery") / "in put ü"
    root.mkdir()
    models = tiny_models()
    save_models(models, root / "models")
    wrong = shutil.copytree(root / "models", root / "models wrong stage")
    save_model(models.renderer, wrong / "motion.safetensors")  # stage 2 where stage 1 belongs
    cut = shutil.copytree(root / "models", root / "models truncated")
    data = (cut / "motion.safetensors").read_bytes()
    (cut / "motion.safetensors").write_bytes(data[: len(data) // 2])

    face = face_frames(VIDEO_FRAMES)
    write_video(root / "face.mp4", face)
    write_video(root / "silent.mp4", face, sound=False)
    write_video(root / "style.mp4", face_frames(10, mirror=True))
    write_video(root / "two frames.mp4", face[:2])
    write_video(root / "one frame.mp4", face[:1])
    write_sound_only_mp4(root / "sound only.mp4")
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is a text file, not a video\n" * 20)
    whole = (root / "face.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    write_video(root / "no face.mp4", np.full((6, 96, 96, 3), 90, np.uint8))
    write_video(root / "two faces.mp4", np.concatenate([face, face_frames(VIDEO_FRAMES, mirror=True)], axis=2))
    for fps in (23.976, 30.0, 60.0):
        write_video(root / f"fps {fps:g}.mp4", face_frames(int(round(fps * VIDEO_FRAMES / FPS))), fps)
    write_video(root / "odd 257x193.mp4", face_frames(VIDEO_FRAMES, 257, 193))
    write_video(root / "portrait 72x128.mp4", face_frames(VIDEO_FRAMES, 72, 128))
    write_video(root / "4k.mp4", face_frames(3, 3840, 2160))
    write_video(root / "vidéo été 音.mp4", face)

    seconds = AUDIO_FRAMES / FPS
    speech = speechlike(seconds, 22050)
    sf.write(root / "speech.wav", speech, 22050)
    sf.write(root / "paroles été 音.wav", speech, 22050)
    for rate in (8000, 44100, 48000, 96000):
        sf.write(root / f"mono {rate}.wav", speechlike(seconds, rate), rate)
    sf.write(root / "stereo.wav", np.stack([speech, 0.5 * speech], axis=1), 22050)
    sf.write(root / "int16.wav", speech, 22050, subtype="PCM_16")
    sf.write(root / "pcm24.wav", speech, 22050, subtype="PCM_24")
    sf.write(root / "silence.wav", np.zeros_like(speech), 22050, subtype="FLOAT")
    dirty = speech.copy()
    dirty[::97], dirty[5::131] = np.nan, np.inf
    sf.write(root / "some nan.wav", dirty, 22050, subtype="FLOAT")
    sf.write(root / "all nan.wav", np.full_like(speech, np.nan), 22050, subtype="FLOAT")
    sf.write(root / "empty.wav", np.zeros(0, np.float32), 16000)
    (root / "text.wav").write_text("not audio\n" * 50)
    sf.write(root / "short.wav", speechlike(5 / FPS, 22050), 22050)  # shorter than the video
    (root / "a folder.mp4").mkdir()
    (root / "a file").write_text("a file where a folder is expected\n")
    return root


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under a folder (the inputs must come out of every case byte-identical)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def pristine(inputs) -> dict[str, str]:
    return snapshot(inputs)


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder no file can be created in: read-only for a normal user; for root (who may write
    anywhere on a normal disk) a sysfs folder, where nobody can."""
    folder = tmp_path / "read only"
    folder.mkdir()
    folder.chmod(0o555)
    probe = folder / "probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return folder
    probe.unlink()
    if Path("/sys/kernel").is_dir():
        return Path("/sys/kernel")
    pytest.skip("no folder here refuses writes to this user")


# ----------------------------------------------------------------------------- the battery


@dataclass(frozen=True)
class Case:
    """One command line: which inputs, what should happen."""

    video: str = "face.mp4"
    audio: str = "speech.wav"
    style: str | None = None
    out: str = "<tmp>/out/synced.mp4"  # <in>: the inputs folder, <tmp>: this case's own folder
    models: str = "models"
    extra: tuple[str, ...] = ()
    code: int = 0
    says: tuple[str, ...] = ()  # fragments of the one error line: the input's name and the fix
    frames: int | None = AUDIO_FRAMES  # output frames on success (None: ceil(the audio's decoded length x fps))
    fps: float = FPS
    size: tuple[int, int] = (128, 128)  # (width, height) on success
    notes: tuple[str, ...] = ()  # fragments the success output must print
    extra_inputs: dict[str, Any] = field(default_factory=dict)


def fail(*says: str, **kwargs) -> Case:
    return Case(code=2, says=says, **kwargs)


def frames_at(fps: float, seconds: float = AUDIO_FRAMES / FPS) -> int:
    """What trim_to_audio promises: every frame the audio covers, the last one partly (ceil)."""
    return math.ceil(seconds * fps - 1e-3)


BATTERY: dict[str, Case] = {
    # --- the video
    "video: empty file": fail("video", "empty.mp4", "give a video file", video="empty.mp4"),
    "video: text file named .mp4": fail("video", "text.mp4", "give a video file", video="text.mp4"),
    "video: truncated": fail("video", "truncated.mp4", "re-encode", video="truncated.mp4"),
    "video: sound only, no picture": fail("video", "sound only.mp4", "no video stream", "give a video file",
                                          video="sound only.mp4"),
    "video: one frame": fail("video", "one frame.mp4", "at least 2 frames", "repeat it", video="one frame.mp4"),
    "video: two frames": Case(video="two frames.mp4"),
    "video: missing": fail("video", "missing.mp4", "check the path", video="missing.mp4"),
    "video: a folder": fail("video", "a folder.mp4", "is a folder", video="a folder.mp4"),
    "video: no face at all": fail("video", "no face.mp4", "no face found", "clearly visible", video="no face.mp4"),
    "video: two faces": Case(video="two faces.mp4", size=(256, 128)),
    "video: 23.976 fps": Case(video="fps 23.976.mp4", fps=23.976, frames=frames_at(23.976)),
    "video: 30 fps": Case(video="fps 30.mp4", fps=30.0, frames=frames_at(30.0)),
    "video: 60 fps": Case(video="fps 60.mp4", fps=60.0, frames=frames_at(60.0)),
    "video: odd size 257x193": Case(video="odd 257x193.mp4", size=(257, 193), notes=("257x193 is an odd frame size",)),
    "video: portrait 72x128": Case(video="portrait 72x128.mp4", size=(72, 128)),
    "video: three 4K frames": Case(video="4k.mp4", size=(3840, 2160), extra=("--length", "trim_to_video"), frames=3),
    "video: silent (own style needs sound)": Case(video="silent.mp4", notes=("no usable sound of its own",)),
    "paths: unicode and spaces": Case(video="vidéo été 音.mp4", audio="paroles été 音.wav",
                                      out="<tmp>/sortie été/résultat 音.mp4"),
    # --- the audio
    "audio: 8 kHz mono": Case(audio="mono 8000.wav"),
    "audio: 44.1 kHz mono": Case(audio="mono 44100.wav"),
    "audio: 48 kHz mono": Case(audio="mono 48000.wav"),
    "audio: 96 kHz mono": Case(audio="mono 96000.wav"),
    "audio: stereo": Case(audio="stereo.wav"),
    "audio: int16": Case(audio="int16.wav"),
    "audio: 24-bit": Case(audio="pcm24.wav"),
    "audio: silence": Case(audio="silence.wav"),
    "audio: some NaN and inf samples": Case(audio="some nan.wav"),
    "audio: every sample NaN": fail("all nan.wav", "NaN", "re-export it", audio="all nan.wav"),
    "audio: empty": fail("audio", "empty.wav", "no audio samples", "give a file with sound", audio="empty.wav"),
    "audio: text file named .wav": fail("audio", "text.wav", "give a file with sound", audio="text.wav"),
    "audio: a video without sound": fail("audio", "silent.mp4", "no audio stream", "give a file with sound",
                                         audio="silent.mp4"),
    "audio: missing": fail("audio", "nothing.wav", "check the path", audio="nothing.wav"),
    # AAC pads its last frame to 1024 samples, so the sound track is a little longer than the 8 frames
    "audio: the video's own sound": Case(audio="face.mp4", frames=None),
    # --- the style clip
    "style: another clip": Case(style="style.mp4"),
    "style: a video without sound": fail("style", "silent.mp4", "no audio stream", "its own sound", style="silent.mp4"),
    "style: a wav, not a video": fail("style", "speech.wav", "give a video file", style="speech.wav"),
    # --- the length policies (8-frame video, 12-frame audio; short.wav is 5 frames)
    "length: trim_to_video": Case(extra=("--length", "trim_to_video"), frames=VIDEO_FRAMES),
    "length: loop": Case(extra=("--length", "loop")),
    "length: ping_pong": Case(extra=("--length", "ping_pong")),
    "length: pad_silence, short audio": Case(audio="short.wav", extra=("--length", "pad_silence"),
                                             frames=VIDEO_FRAMES),
    "length: trim_to_audio, short audio": Case(audio="short.wav", frames=5),
    # --- the weights
    "weights: wrong stage": fail("motion.safetensors", "'renderer' model", "put the stage-1 lip-motion model here",
                                 models="models wrong stage"),
    "weights: truncated": fail("motion.safetensors", "re-copy", models="models truncated"),
    "weights: no models folder": fail("--models", "nowhere", "folder of .safetensors", models="nowhere"),
    # --- the output
    "out: the input video": fail("--out", "face.mp4", "video input", "name a new file", out="<in>/face.mp4"),
    "out: the input audio": fail("--out", "speech.wav", "audio input", "name a new file", out="<in>/speech.wav"),
    "out: the style clip": fail("--out", "style.mp4", "style input", style="style.mp4", out="<in>/style.mp4"),
    "out: an existing folder": fail("--out", "a folder.mp4", "is a folder", "name the output file",
                                    out="<in>/a folder.mp4"),
    "out: a .wav name": fail("--out", "out.wav", "name it .mp4", out="<tmp>/out.wav"),
    "out: under a file": fail("--out", "a file", "choose another output folder", out="<in>/a file/out.mp4"),
    "out: a missing folder is created": Case(out="<tmp>/new/deeper/synced.mp4"),
    # --- bad arguments
    "args: --steps 0": fail("--steps", "at least 1", extra=("--steps", "0")),
    "args: --chunk 0": fail("--chunk", "at least 1", extra=("--chunk", "0")),
    "args: --guidance -1": fail("--guidance", "from 0 to 10", extra=("--guidance", "-1")),
    "args: --steps not a number": fail("--steps", "invalid int", "--help", extra=("--steps", "ten")),
    "args: unknown sampler": fail("--sampler", "invalid choice", extra=("--sampler", "dpm9000")),
    "args: unknown length policy": fail("--length", "invalid choice", extra=("--length", "stretch")),
    "args: --style-strength nan": fail("--style-strength", "use a number", extra=("--style-strength", "nan")),
    "args: --max-gap -1": fail("--max-gap", "seconds >= 0", extra=("--max-gap", "-1")),
    "args: unknown device": fail("--device", "cpu", extra=("--device", "gpu0")),
    "args: --no-face passthrough": Case(extra=("--no-face", "passthrough")),
}


def run_cli(inputs: Path, tmp: Path, case: Case) -> tuple[int, Path]:
    def where(name: str | None) -> str | None:
        if name is None:
            return None
        return name.replace("<in>", str(inputs)).replace("<tmp>", str(tmp)) if "<" in name else str(inputs / name)

    out = Path(where(case.out))
    argv = ["run", "--video", where(case.video), "--audio", where(case.audio), "--out", str(out),
            "--models", where(case.models), "--steps", "1", "--chunk", "8", *case.extra]  # fmt: skip
    if case.style is not None:
        argv += ["--style", where(case.style)]
    return main(argv), out


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error")]


def decoded(path: Path) -> tuple[int, tuple[int, int], float, float]:
    """(frames, (width, height), fps, audio seconds) of a written video."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        size = (stream.codec_context.width, stream.codec_context.height)
        fps = float(stream.average_rate)
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        seconds = float(audio.duration * audio.time_base)
    return frames, size, fps, seconds


@pytest.mark.parametrize("name", list(BATTERY))
def test_battery(name, inputs, pristine, tmp_path, capsys):
    case = BATTERY[name]
    tmp = tmp_path / "case"
    tmp.mkdir()
    code, out = run_cli(inputs, tmp, case)
    captured = capsys.readouterr()
    assert code == case.code, captured.err
    assert snapshot(inputs) == pristine, "an input file was changed"
    if case.code:
        [line] = error_lines(captured.err)
        assert "Traceback" not in captured.err
        for fragment in case.says:
            assert fragment in line, f"{fragment!r} not in {line!r}"
        assert [p for p in tmp.rglob("*") if p.is_file()] == [], "an output or partial file was left"
        return  # (no partial file in the inputs' folder either: its snapshot is unchanged)
    expected = case.frames
    if expected is None:
        from lipsync_core.audio import load_audio_file

        expected = frames_at(case.fps, len(load_audio_file(inputs / case.audio)) / 16000)
    frames, size, fps, seconds = decoded(out)
    assert frames == expected and size == case.size and fps == pytest.approx(case.fps, abs=1e-3)
    assert seconds == pytest.approx(expected / case.fps, abs=0.05)
    assert f"wrote {out}: {expected} frames" in captured.out
    for note in case.notes:
        assert note in captured.out
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no partial file beside it


def test_the_battery_is_large_enough():
    assert len(BATTERY) >= 30
    assert sum(case.code != 0 for case in BATTERY.values()) >= 15
    assert len(NODE_BATTERY) >= 20


# ----------------------------------------------------------------------------- the all-in-one node


NODE_FRAMES = 6


def _node_audio(wave: Any, rate: int = 22050) -> dict[str, Any]:
    return {"waveform": torch.as_tensor(np.asarray(wave))[None] if np.asarray(wave).ndim == 2
            else torch.as_tensor(np.asarray(wave))[None, None], "sample_rate": rate}  # fmt: skip


def _speech(frames: float = 9, rate: int = 22050) -> np.ndarray:
    return speechlike(frames / FPS, rate)


NODE_BATTERY: dict[str, dict[str, Any]] = {
    # bad inputs: the one-line error must name the input and contain the fix
    "audio: empty": {"audio": _node_audio(np.zeros(0, np.float32)), "error": ("audio", "0 samples", "give audio")},
    "audio: every sample NaN": {"audio": _node_audio(np.full(4000, np.nan, np.float32)),
                                "error": ("audio", "NaN", "re-export it")},
    "audio: a batch of two clips": {"audio": {"waveform": torch.zeros(2, 1, 4000), "sample_rate": 16000},
                                    "error": ("audio", "batch", "give one clip")},
    "audio: not an AUDIO": {"audio": "speech.wav", "error": ("audio", "connect a Load Audio")},
    "images: one frame": {"frames": 1, "error": ("at least 2 frames", "repeat it")},
    "images: no face": {"images": torch.full((4, 96, 96, 3), 0.4), "error": ("images", "no face found", "visible")},
    "images: not an IMAGE batch": {"images": torch.zeros(96, 96, 3), "error": ("images", "IMAGE batch")},
    "fps: none given": {"fps": 0.0, "error": ("fps or video_info", "no frame rate", "connect VHS video_info")},
    "style: images without audio": {"style": True, "style_audio": None, "error": ("style_audio", "not connected",
                                                                                  "connect the style clip's AUDIO")},
    "steps: 0": {"steps": 0, "error": ("steps", "at least 1")},
    # odd inputs that must work: frames as the policy says, audio exactly as long, the input's size
    "audio: int16 samples": {"audio": _node_audio((_speech() * 32767).astype(np.int16))},
    "audio: float holding int16 values": {"audio": _node_audio(_speech() * 32767)},
    "audio: stereo given as [T, C]": {"audio": _node_audio(np.stack([_speech(), _speech()], axis=1))},
    "audio: 8 kHz": {"audio": _node_audio(_speech(rate=8000), 8000)},
    "audio: 96 kHz": {"audio": _node_audio(_speech(rate=96000), 96000)},
    "audio: silence": {"audio": _node_audio(np.zeros(int(9 / FPS * 22050), np.float32))},
    "images: RGBA": {"alpha": True},
    "images: odd size 65x47": {"size": (65, 47)},
    "images: portrait 48x96, 30 fps": {"size": (48, 96), "fps": 30.0},
    "style: another clip": {"style": True},
    "length: trim_to_video": {"length_policy": "trim_to_video", "frames_out": NODE_FRAMES},
    "length: loop": {"length_policy": "loop", "frames_out": 9},
    "length: ping_pong": {"length_policy": "ping_pong", "frames_out": 9},
    "length: pad_silence": {"length_policy": "pad_silence", "frames_out": 9},
    "no_face: passthrough, no gap longer than 0 s": {"no_face": "passthrough", "max_gap_seconds": 0.0},
}


@pytest.fixture(scope="module")
def node_models():
    from node_samples import model_inputs, run

    return run("StyleLipSyncLoadModels", **model_inputs())[0]


@pytest.mark.parametrize("name", list(NODE_BATTERY))
def test_node_battery(name, node_models):
    from node_samples import run

    from lipsync_core.types import LipSyncInputError

    case = dict(NODE_BATTERY[name])
    width, height = case.pop("size", (96, 96))
    fps = case.pop("fps", FPS)
    frames = face_frames(case.pop("frames", NODE_FRAMES), width, height)
    images = torch.from_numpy(frames).float() / 255.0
    if case.pop("alpha", False):
        images = torch.cat([images, torch.ones_like(images[..., :1])], dim=-1)
    images = case.pop("images", images)
    audio = case.pop("audio", _node_audio(_speech()))
    kwargs: dict[str, Any] = {"length_policy": "trim_to_audio", "steps": 1, **case}
    error = kwargs.pop("error", None)
    frames_out = kwargs.pop("frames_out", math.ceil(9 / FPS * fps - 1e-3))
    if kwargs.pop("style", False):
        kwargs["style_images"] = torch.from_numpy(face_frames(8, 80, 80, mirror=True)).float() / 255.0
        kwargs.setdefault("style_audio", _node_audio(_speech(8)))
        if kwargs["style_audio"] is None:
            del kwargs["style_audio"]
    originals = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in (("images", images),)}
    waveform = audio["waveform"].clone() if isinstance(audio, dict) else None
    call = {"models": node_models, "images": images, "audio": audio, "fps": fps, "style_strength": 1.0,
            "sampler": "ddim", "seed": 0, "chunk_size": 8, **kwargs}  # fmt: skip
    if error:
        with pytest.raises(LipSyncInputError) as err:
            run("StyleLipSyncLipSync", **call)
        message = str(err.value)
        assert "\n" not in message
        for fragment in error:
            assert fragment in message, f"{fragment!r} not in {message!r}"
    else:
        out, out_audio, mask, out_fps, video = run("StyleLipSyncLipSync", **call)
        parts = video.get_components()
        assert torch.equal(parts.images, out) and float(parts.frame_rate) == pytest.approx(out_fps, rel=1e-6)
        assert torch.equal(parts.audio["waveform"], out_audio["waveform"])
        assert out.shape == (frames_out, images.shape[1], images.shape[2], 3) and out_fps == fps
        assert mask.shape == out.shape[:3] and torch.isfinite(out_audio["waveform"]).all()
        rate = audio["sample_rate"]
        assert out_audio["sample_rate"] == rate
        assert out_audio["waveform"].shape[-1] == round(frames_out / fps * rate)
    assert torch.equal(images, originals["images"]), "the input IMAGE was changed"
    if waveform is not None:
        assert torch.equal(audio["waveform"].nan_to_num(), waveform.nan_to_num()), "the input AUDIO was changed"


# ----------------------------------------------------------------------------- the seven failures


@pytest.mark.parametrize("link", ["same path", "symlink", "hard link"])
def test_1_out_naming_the_input_video_is_refused_and_the_video_kept(inputs, pristine, tmp_path, capsys, link):
    video = tmp_path / "mine.mp4"
    shutil.copyfile(inputs / "face.mp4", video)
    original = video.read_bytes()
    out = {"same path": video, "symlink": tmp_path / "link.mp4", "hard link": tmp_path / "hard.mp4"}[link]
    if link == "symlink":
        out.symlink_to(video)
    elif link == "hard link":
        os.link(video, out)
    code = main(["run", "--video", str(video), "--audio", str(inputs / "speech.wav"), "--out", str(out),
                 "--models", str(inputs / "models"), "--steps", "1"])  # fmt: skip
    [line] = error_lines(capsys.readouterr().err)
    assert code == 2 and "is the video input file" in line and "name a new file" in line
    assert video.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"mine.mp4", out.name})


def _black_demo(tmp_path: Path) -> Path:
    """The demo clip with frames 10-20 blacked out (and its own sound)."""
    from lipsync_core.media import read_video

    frames, fps = read_video(DEMO / "video.mp4")
    frames[10:21] = 0
    wave, rate = sf.read(DEMO / "video.wav", dtype="float32")
    with VideoWriter(tmp_path / "black.mp4", fps, audio=wave, sample_rate=rate) as writer:
        writer.write(frames)
    return tmp_path / "black.mp4"


def test_2_black_frames_get_no_face_painted_on_them(inputs, tmp_path, capsys):
    """The demo clip with frames 10-20 black: all 11 pass through untouched (they were interpolated before)."""
    from lipsync_core.media import read_video

    video = _black_demo(tmp_path)
    out = tmp_path / "out.mp4"
    code = main(["run", "--video", str(video), "--audio", str(DEMO / "target.wav"), "--out", str(out),
                 "--models", str(inputs / "models"), "--steps", "1", "--length", "trim_to_video"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "note: frames 10-20: no face, passed through untouched" in captured.out
    frames, _ = read_video(out)
    assert frames[10:21].max() <= 8, "something was painted on a black frame"  # encoder noise only


def test_2_the_all_in_one_node_exposes_the_no_face_policy_and_keeps_black_frames(node_models):
    from node_samples import run
    from StyleLipSync.nodes import NODE_CLASS_MAPPINGS

    from lipsync_core.audio import make_audio
    from lipsync_core.media import read_video

    optional = NODE_CLASS_MAPPINGS["StyleLipSyncLipSync"].INPUT_TYPES()["optional"]
    assert optional["no_face"][1]["options"] == ["interpolate", "passthrough"] and "max_gap_seconds" in optional
    frames, fps = read_video(DEMO / "video.mp4")
    frames = frames[:24].copy()
    frames[10:21] = 0
    images = torch.from_numpy(frames).float() / 255.0
    wave, rate = sf.read(DEMO / "target.wav", dtype="float32")
    common = {"models": node_models, "images": images, "audio": make_audio(wave, rate), "fps": fps,
              "length_policy": "trim_to_video", "style_strength": 1.0, "sampler": "ddim", "steps": 1, "seed": 0,
              "chunk_size": 8}  # fmt: skip
    out, _, mask, _, _ = run("StyleLipSyncLipSync", **common)  # the default policy: interpolate dropouts only
    assert torch.equal(out[10:21], images[10:21]) and mask[10:21].max() == 0
    assert mask[:10].amax(dim=(1, 2)).min() > 0  # the face frames were repainted
    out, _, mask, _, _ = run("StyleLipSyncLipSync", **common, no_face="passthrough", max_gap_seconds=2.0)
    assert torch.equal(out[10:21], images[10:21]) and mask[10:21].max() == 0


@pytest.mark.parametrize("mistake", ["read-only folder", "an existing folder", "the input wav"])
def test_3_output_path_mistakes_are_one_line_and_leave_nothing(inputs, pristine, tmp_path, capsys, mistake):
    if mistake == "read-only folder":
        out, says = unwritable_folder(tmp_path) / "out.mp4", "cannot write in"
    elif mistake == "an existing folder":
        (tmp_path / "already here").mkdir()
        out, says = tmp_path / "already here", "is a folder"
    else:
        out, says = inputs / "speech.wav", "is the audio input file"
    before = sorted(tmp_path.rglob("*"))
    start = time.perf_counter()
    code = main(["run", "--video", str(inputs / "face.mp4"), "--audio", str(inputs / "speech.wav"), "--out", str(out),
                 "--models", str(inputs / "models"), "--steps", "1"])  # fmt: skip
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    [line] = error_lines(err)
    assert code == 2 and says in line and "Traceback" not in err and err.count("\n") == 1
    assert seconds < 2.0, "the output path is checked before any model or tracker is loaded"
    assert sorted(tmp_path.rglob("*")) == before and snapshot(inputs) == pristine
    assert not list(tmp_path.rglob("*.partial*")) and not list(inputs.rglob("*.partial*"))


def test_3_a_write_failure_at_the_end_leaves_no_partial_file(inputs, tmp_path, monkeypatch):
    """Even when the final rename fails (a folder took the output's name meanwhile), nothing is left."""
    out = tmp_path / "out.mp4"
    with pytest.raises(Exception, match="could not replace") as err:
        with VideoWriter(out, FPS) as writer:
            writer.write(face_frames(3))
            out.mkdir()
    assert "\n" not in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"] and out.is_dir()


def test_4_odd_frame_size_is_kept_exactly(inputs, tmp_path, capsys):
    """257x193 comes out 257x193 (it used to be cropped to 256x192 without a word)."""
    out = tmp_path / "odd.mp4"
    code = main(["run", "--video", str(inputs / "odd 257x193.mp4"), "--audio", str(inputs / "speech.wav"),
                 "--out", str(out), "--models", str(inputs / "models"), "--steps", "1"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert decoded(out)[1] == (257, 193)
    assert "note: 257x193 is an odd frame size: written as H.264 4:4:4" in captured.out
    assert "257x193" in captured.out.splitlines()[-1]


def test_4_every_node_returns_the_input_size():
    from node_samples import model_inputs, run

    from lipsync_core.audio import make_audio

    models = run("StyleLipSyncLoadModels", **model_inputs())[0]
    for width, height in ((97, 65), (64, 113)):
        images = torch.from_numpy(face_frames(4, width, height)).float() / 255.0
        out, audio, mask, fps, _ = run("StyleLipSyncLipSync", models, FPS, "trim_to_video", 1.0, "ddim", 1, 0, 8,
                                       images=images, audio=make_audio(speechlike(4 / FPS, 16000), 16000))
        assert out.shape == images.shape and mask.shape == images.shape[:3] and fps == FPS


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"audio": "empty.wav"}, ("audio", "empty.wav", "holds no audio samples", "give a file with sound in it")),
        ({"audio": "silent.mp4"}, ("audio", "silent.mp4", "has no audio stream", "give a file with sound in it")),
        ({"style": "silent.mp4"}, ("style", "silent.mp4", "has no audio stream",
                                   "the style clip must be a video with its own sound")),
        ({"models": "models wrong stage"}, ("motion.safetensors", "holds a 'renderer' model",
                                            "put the stage-1 lip-motion model here (motion.safetensors",
                                            "this file is the stage-2 face renderer, which belongs in "
                                            "renderer.safetensors")),
    ],
)
def test_5_messages_say_what_to_do(inputs, tmp_path, capsys, args, says):
    code, _ = run_cli(inputs, tmp_path, Case(**args))
    [line] = error_lines(capsys.readouterr().err)
    assert code == 2
    for fragment in says:
        assert fragment in line
    assert "audio file" not in line  # a style clip is not an "audio file"


def test_6_a_bad_argument_fails_within_2_s(inputs, tmp_path):
    """A real process: imports included. --steps 0 used to be reported after 7 s of imports and tracking."""
    for extra in (["--steps", "0"], ["--sampler", "nope"]):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "lipsync_core", "run", "--video", str(inputs / "face.mp4"), "--audio",
             str(inputs / "speech.wav"), "--out", str(tmp_path / "out.mp4"), *extra],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        assert proc.returncode == 2 and proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: ")
        assert seconds < 2.0, f"{extra}: {seconds:.2f} s"
    assert not (tmp_path / "out.mp4").exists()
    proc = subprocess.run([sys.executable, "-m", "lipsync_core", "run", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and "--no-face" in proc.stdout
    # what makes it fast: the checks import none of the heavy packages
    heavy = "torch diffusers mediapipe scipy librosa cv2".split()
    check = ("import sys, lipsync_core.cli, lipsync_core.media, lipsync_core.audio.io, lipsync_core.weights; "
             f"print([m for m in {heavy!r} if m in sys.modules])")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_7_the_all_in_one_node_cleans_nan_audio_as_the_cli_does():
    """The AUDIO the node outputs holds exactly the samples the CLI would write: NaN/inf -> 0 (it used to pass
    NaN through to Video Combine), at the input's own rate and channels; the input AUDIO is left as it was."""
    from node_samples import model_inputs, run

    from lipsync_core.audio import clean_waveform, make_audio

    models = run("StyleLipSyncLoadModels", **model_inputs())[0]
    wave = np.stack([speechlike(6 / FPS, 22050)] * 2)
    wave[:, ::50], wave[1, 7::90] = np.nan, -np.inf
    audio = make_audio(wave, 22050)
    before = audio["waveform"].clone()
    images = torch.from_numpy(face_frames(6)).float() / 255.0
    _, out_audio, _, _, _ = run("StyleLipSyncLipSync", models, FPS, "trim_to_audio", 1.0, "ddim", 1, 0, 8,
                                images=images, audio=audio, video_audio=audio)  # fmt: skip
    cleaned = out_audio["waveform"]
    n = cleaned.shape[-1]
    assert out_audio["sample_rate"] == 22050 and cleaned.shape[:2] == (1, 2) and torch.isfinite(cleaned).all()
    assert torch.equal(cleaned[0], torch.from_numpy(clean_waveform(wave))[:, :n])
    assert torch.equal(audio["waveform"].isnan(), before.isnan())  # the input AUDIO is not altered
    assert torch.equal(torch.nan_to_num(audio["waveform"]), torch.nan_to_num(before))


def test_7_model_info_lists_the_shipped_demo_weights():
    from node_samples import run
    from StyleLipSync.nodes import NODE_CLASS_MAPPINGS
    from StyleLipSync.nodes.lipsync_nodes import ALL_FILES
    from StyleLipSync.nodes.models import DEMO_CHOICE

    choices = NODE_CLASS_MAPPINGS["StyleLipSyncModelInfo"].INPUT_TYPES()["required"]["model"][1]["options"]
    assert choices[:2] == [ALL_FILES, DEMO_CHOICE]
    for choice in (ALL_FILES, DEMO_CHOICE):
        report = run("StyleLipSyncModelInfo", choice)[0]
        for name in ("motion", "renderer", "mouth_model", "vae"):
            assert f"{DEMO_CHOICE}: {name}.safetensors: OK" in report, report
