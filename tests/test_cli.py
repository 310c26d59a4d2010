"""``python -m lipsync_core run``: the file job, its output, and one-line errors with no partial file."""

from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile as sf

from lipsync_core.cli import _job_options, build_parser, main
from lipsync_core.media import VideoWriter, probe_video
from lipsync_core.models.io import save_model
from tests.tiny_models import FPS, astronaut_video, save_models, speechlike, tiny_models


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    models = tiny_models()
    save_models(models, root / "models")
    frames = astronaut_video(num_frames=10, gap=(4, 5))
    with VideoWriter(root / "face.mp4", FPS, audio=speechlike(10 / FPS, 44100), sample_rate=44100) as w:
        w.write(frames)
    sf.write(root / "speech.wav", speechlike(14 / FPS, 22050), 22050)
    with VideoWriter(root / "grey.mp4", FPS) as w:
        w.write(np.full((6, 128, 128, 3), 90, np.uint8))
    with VideoWriter(root / "still.mp4", FPS) as w:
        w.write(frames[:1])
    sf.write(root / "empty.wav", np.zeros(0, np.float32), 16000)
    (root / "junk.mp4").write_bytes(b"\x00not a video" * 50)
    wrong = root / "wrong"
    wrong.mkdir()
    for name in ("motion", "renderer", "vae", "mouth_model"):
        (wrong / f"{name}.safetensors").write_bytes((root / "models" / f"{name}.safetensors").read_bytes())
    save_model(models.renderer, wrong / "motion.safetensors")  # a stage-2 file where stage 1 belongs
    return root


def _run(files, *extra, video="face.mp4", audio="speech.wav", models="models"):
    out = files / "out.mp4"
    out.unlink(missing_ok=True)
    code = main(["run", "--video", str(files / video), "--audio", str(files / audio), "--out", str(out),
                 "--models", str(files / models), "--steps", "2", "--chunk", "4", *extra])
    return code, out


def test_run_writes_the_video_with_the_new_audio(files, capsys):
    code, out = _run(files)
    assert code == 0, capsys.readouterr().err
    info = probe_video(out)
    assert info.has_audio and abs(info.fps - FPS) < 1e-6
    with av.open(str(out)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(out)) as c:
        audio = c.streams.audio[0]
        seconds = float(audio.duration * audio.time_base)
    assert frames == 14  # trim_to_audio: the audio is 14 frames long; the 10-frame video is held
    assert abs(seconds - 14 / FPS) < 0.05
    assert "note: frame 4: no face, passed through untouched" in capsys.readouterr().out  # a grey card, not a dropout


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"video": "grey.mp4"}, "no face found"),
        ({"audio": "empty.wav"}, "audio"),
        ({"video": "junk.mp4"}, "junk.mp4"),
        ({"video": "still.mp4"}, "at least 2 frames"),
        ({"models": "wrong"}, "'motion' model is expected"),
    ],
)
def test_bad_input_gets_one_line_and_no_output(files, capsys, kwargs, expected):
    code, out = _run(files, **kwargs)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]  # progress bars aside
    assert code == 2
    assert len(errors) == 1 and expected in errors[0] and "Traceback" not in err
    assert not out.exists() and not list(files.glob("out.partial*"))


def test_bench_runs_the_job_with_the_options_run_honours(files, capsys):
    """``bench`` builds its job as ``run`` does: a flag such as --no-face reaches the tracker (the grey card is
    passed through by the policy, not for its content) and --length sets the frame count."""
    code = main(["bench", "--video", str(files / "face.mp4"), "--audio", str(files / "speech.wav"),
                 "--models", str(files / "models"), "--steps", "2", "--chunk", "4",
                 "--no-face", "passthrough", "--length", "trim_to_video"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "note: frame 4: no face, passed through untouched (1 frames, gap_policy=passthrough)" in out
    assert "\n10 frames at 25 fps" in out  # the 10-frame video, not the 14-frame audio
    assert "whole job" in out


def test_bench_defaults_are_the_run_commands():
    """Bench figures compare with the job users run: at the defaults both build the same options."""
    parser = build_parser()
    bench = parser.parse_args(["bench"])
    run = parser.parse_args(["run", "--video", "v.mp4", "--audio", "a.wav", "--out", "o.mp4"])
    for fps in (25.0, 29.97):
        assert _job_options(bench, fps) == _job_options(run, fps)


def test_the_face_backend_flag_reaches_the_tracker():
    """--face-backend picks the landmark backend (the bench compares the torch port with the package so)."""
    parser = build_parser()
    default = parser.parse_args(["bench"])
    chosen = parser.parse_args(["bench", "--face-backend", "mediapipe"])
    assert _job_options(default, 25.0).tracker_options["backend"] == "torch"
    assert _job_options(chosen, 25.0).tracker_options["backend"] == "mediapipe"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--face-backend", "dlib"])
