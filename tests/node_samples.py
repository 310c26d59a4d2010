"""Real inputs for running every lip-sync node in tests: tiny random models saved as files, a face video, speech.

Built once per process (tracking and model fitting take a few seconds) and shared by the tests.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import torch
from StyleLipSync.nodes import NODE_CLASS_MAPPINGS

from lipsync_core.audio import make_audio
from tests.tiny_models import FPS, astronaut_video, save_models, speechlike, tiny_models

NUM_FRAMES = 10


def run(node_id: str, *args: Any, **inputs: Any) -> Any:
    """Run a node as the host does (its V3 ``execute``), outside a host: the NodeOutput (index or unpack it;
    ``.ui`` holds what it shows)."""
    return NODE_CLASS_MAPPINGS[node_id].execute(*args, **inputs)


@functools.cache
def model_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="stylelipsync-nodes-"))
    return save_models(tiny_models(), folder)


def model_inputs() -> dict[str, str]:
    folder = model_folder()
    files = {"motion_model": "motion", "renderer": "renderer", "mouth_model": "mouth_model", "vae": "vae"}
    return {name: str(folder / f"{stem}.safetensors") for name, stem in files.items()}


@functools.cache
def sample() -> dict[str, Any]:
    """models, images, audio (22.05 kHz stereo, 0.2 s longer than the video), track, features, style, motion."""
    models = run("StyleLipSyncLoadModels", **model_inputs())[0]
    images = torch.from_numpy(astronaut_video(NUM_FRAMES, 192, gap=(6, 7))).float() / 255.0
    wave = speechlike(NUM_FRAMES / FPS + 0.2, 22050)
    audio = make_audio(torch.stack([torch.from_numpy(wave), 0.5 * torch.from_numpy(wave)]).numpy(), 22050)
    track = run("StyleLipSyncTrackFaces", images, FPS, "torch", "largest", "passthrough", 0.5)[0]
    features = run("StyleLipSyncAudioFeatures", models, FPS, 0, audio=audio, images=images)[0]
    style = run("StyleLipSyncStyleReference", models, 64, 0.0, video_track=track, video_audio=audio)[0]
    motion = run("StyleLipSyncPredictMotion", models, features, 1.0, 1.0, False, style=style)[0]
    return {"models": models, "images": images, "audio": audio, "track": track, "features": features,
            "style": style, "motion": motion}  # fmt: skip


def render_kwargs(**overrides: Any) -> dict[str, Any]:
    s = sample()
    kwargs = {"models": s["models"], "images": s["images"], "track": s["track"], "motion": s["motion"],
              "sampler": "dpmpp_2m", "steps": 2, "seed": 0, "chunk_size": 4, "color_match": 0.5,
              "reference_images": 2}  # fmt: skip
    return {**kwargs, **overrides}


@functools.cache
def demo_footage() -> dict[str, Any]:
    """The demo person's two clips as one footage (5.3 s, 256 px): images, their own sound (AUDIO), fps."""
    import numpy as np

    from lipsync_core.audio import read_audio_file
    from lipsync_core.media import read_video
    from lipsync_core.types import DEMO_CLIPS

    frames = np.concatenate([read_video(DEMO_CLIPS / f"{n}.mp4")[0] for n in ("video", "reference")])
    waves = [read_audio_file(DEMO_CLIPS / f"{n}.wav") for n in ("video", "reference")]
    wave = np.concatenate([w for w, _ in waves], axis=-1)
    return {"images": torch.from_numpy(frames).float() / 255.0, "audio": make_audio(wave, waves[0][1]), "fps": FPS}
