"""One puppet clip: speech -> articulation -> mesh -> frames, all from a seed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..face.topology import LIPS_INNER
from ..types import LipSyncInputError
from .articulation import CHANNELS, SpeakerStyle, articulation_track
from .identity import PHOTOS, Identity, IdentitySpec, canvas_size, make_identity
from .render import MeshWarp, draw_mouth_interior, similarity, smooth_noise
from .rig import FaceFrame, blink_curve, inter_ocular
from .tts import Phoneme, Voice, synthesize

VOICE_VARIANTS = ("m1", "m2", "m3", "m4", "m6", "m7", "f1", "f2", "f3", "f4", "")
VOICE_LANGUAGES = ("en-us", "en", "en-gb-x-rp", "en-us-nyc")


@dataclass(frozen=True)
class Speaker:
    """A puppet speaker: a face, a voice and a speaking style."""

    speaker_id: str
    identity: IdentitySpec
    voice: Voice
    style: SpeakerStyle

    def to_dict(self) -> dict:
        v = self.voice
        return {
            "speaker_id": self.speaker_id,
            "identity": self.identity.to_dict(),
            "voice": {"name": v.name, "variant": v.variant, "rate": v.rate, "pitch": v.pitch,
                      "pitch_range": v.pitch_range},
            "style": self.style.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Speaker:
        return cls(d["speaker_id"], IdentitySpec.from_dict(d["identity"]), Voice(**d["voice"]),
                   SpeakerStyle.from_dict(d["style"]))


def sample_speaker(speaker_id: str, rng: np.random.Generator, photo: str | None = None,
                   per_sound: bool = True) -> Speaker:
    """Draw a speaker (face variation, voice, style) from the seeded distribution (``photo``: force a base photo;
    ``per_sound=False``: global style parameters only, as the puppets before issue 14)."""
    identity = IdentitySpec.sample(rng, photo)
    voice = Voice(
        name=VOICE_LANGUAGES[int(rng.integers(len(VOICE_LANGUAGES)))],
        variant=VOICE_VARIANTS[int(rng.integers(len(VOICE_VARIANTS)))],
        rate=int(rng.integers(140, 191)),
        pitch=int(rng.integers(30, 71)),
        pitch_range=int(rng.integers(30, 81)),
    )
    return Speaker(speaker_id, identity, voice, SpeakerStyle.sample(rng, per_sound))


def make_speakers(n: int, seed: int, per_sound: bool = True) -> list[Speaker]:
    """``n`` speakers from ``seed``; speaker i does not depend on n (a larger set extends a smaller one).

    Use different seeds for training and held-out sets: their styles come from the same distribution
    but are different draws. ``per_sound=False`` leaves out the per-sound style (the same speakers otherwise).
    """
    if n < 1:
        raise LipSyncInputError(f"speakers={n}: ask for at least 1 speaker")
    children = np.random.SeedSequence(seed).spawn(n)
    photos = sorted(PHOTOS)
    offset = seed % len(photos)  # base photos alternate, so every set of 2+ speakers has both faces
    return [
        sample_speaker(f"s{seed:04d}_{i:03d}", np.random.default_rng(c), photos[(i + offset) % len(photos)],
                       per_sound)
        for i, c in enumerate(children)
    ]


@dataclass
class PuppetClip:
    """A rendered clip and its ground truth. Frame k shows time k / fps.

    frames: (T, H, W, 3) uint8 RGB; audio: (S,) float32 mono at sample_rate;
    landmarks: (T, 478, 3) float32 ground-truth mesh in output pixels (z scaled like x);
    articulation: (T, len(CHANNELS)) float32 the styled mouth channels that drove the mesh;
    head: (T, 4) float32 head motion in the image plane (roll deg, scale, tx px, ty px); phonemes: the speech
    timeline; blink: (T,) float32 eyelid closure (0 open, 1 shut); head_pose: (T, 2) float32 out-of-plane
    turn (yaw deg, positive: the face turns to the image's left; pitch deg, positive: chin down), None when
    the head does not turn.
    """

    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int
    fps: float
    landmarks: np.ndarray
    articulation: np.ndarray
    head: np.ndarray
    phonemes: list[Phoneme]
    sentence: str
    speaker: Speaker
    style: SpeakerStyle  # the rendition's style (the speaker's plus small per-clip variation)
    seed: int
    blink: np.ndarray  # (T,) eyelid closure 0..1
    head_pose: np.ndarray | None = None  # (T, 2) yaw, pitch degrees

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    def mouth_geometry(self) -> dict[str, np.ndarray]:
        """Per-frame mouth measures from the ground-truth mesh, in pixels and in inter-ocular units."""
        return mouth_geometry(self.landmarks)


def mouth_geometry(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Opening (13-14), width (61-291) and their ratio to the inter-ocular distance, per frame."""
    lm = np.asarray(landmarks, np.float32)
    iod = inter_ocular(lm)
    opening = np.linalg.norm(lm[:, 14, :2] - lm[:, 13, :2], axis=-1)
    width = np.linalg.norm(lm[:, 291, :2] - lm[:, 61, :2], axis=-1)
    return {
        "opening_px": opening.astype(np.float32),
        "width_px": width.astype(np.float32),
        "iod_px": iod.astype(np.float32),
        "opening": (opening / iod).astype(np.float32),
        "width": (width / iod).astype(np.float32),
    }


# Out-of-plane head turn at head_turn=1: smooth random curves reaching about +/-YAW_DEG and +/-PITCH_DEG, the
# small turns of a person talking to a camera (tracking, pose removal and the renderer must cope with them).
YAW_DEG, PITCH_DEG = 8.0, 5.0


def turn_meshes(meshes: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Rotate canvas meshes (T, 478, 3) by yaw and pitch (T, 2 degrees) about the face's centre, orthographic.

    x right, y down, z away from the camera (MediaPipe's); the photo's texture follows the warp, so a turn
    shows as parallax (the nose moves against the cheeks), the way a small real turn looks.
    """
    out = np.array(meshes, np.float64, copy=True)
    centre = out.mean(axis=1, keepdims=True)
    d = out - centre
    yaw, pitch = np.deg2rad(pose[:, 0])[:, None], np.deg2rad(pose[:, 1])[:, None]
    x, z = d[..., 0] * np.cos(yaw) + d[..., 2] * np.sin(yaw), -d[..., 0] * np.sin(yaw) + d[..., 2] * np.cos(yaw)
    y, z = d[..., 1] * np.cos(pitch) - z * np.sin(pitch), d[..., 1] * np.sin(pitch) + z * np.cos(pitch)
    return (np.stack([x, y, z], axis=-1) + centre).astype(np.float32)


def _frame_count(duration: float, fps: float) -> int:
    return max(1, int(math.ceil(duration * fps - 1e-9)))


def render_frames(identity: Identity, meshes: np.ndarray, head: np.ndarray, size: int,
                  lighting: np.ndarray, flicker: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, size, size, 3) and output-pixel meshes (T, 478, 3) for canvas meshes and head motion."""
    t_count = len(meshes)
    c = canvas_size(size)
    src_pts = np.concatenate([identity.warp_source, identity.anchors])
    anchors = np.broadcast_to(identity.anchors, (t_count, *identity.anchors.shape))
    warp = MeshWarp(src_pts, identity.triangles, np.concatenate([meshes[..., :2], anchors], axis=1), (c, c))
    source = np.clip(identity.image.astype(np.float32) * lighting, 0, 255).astype(np.uint8)
    gy, gx = np.mgrid[0:size, 0:size].astype(np.float64)
    frames = np.empty((t_count, size, size, 3), np.uint8)
    out_meshes = np.empty_like(meshes)
    axes = identity.rig.frame
    cavity = identity.lip_rgb * lighting[c // 2, c // 2] * 0.28
    teeth = np.array([236.0, 232.0, 218.0], np.float32) * lighting[c // 2, c // 2]
    centre = np.array([c / 2, c / 2])
    for k in range(t_count):
        roll, scale, tx, ty = head[k]
        m = similarity(roll, scale, centre, np.array([size / 2 + tx, size / 2 + ty]))
        inv = cv2.invertAffineTransform(m)
        px = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
        py = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]
        sx, sy = warp.source_coords(k, px, py)
        frame = cv2.remap(source, sx.astype(np.float32), sy.astype(np.float32), cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)
        xy = meshes[k, :, :2] @ m[:, :2].T + m[:, 2]
        out_meshes[k, :, :2] = xy
        out_meshes[k, :, 2] = meshes[k, :, 2] * scale
        draw_mouth_interior(frame, xy[list(LIPS_INNER)], axes, scale, cavity, teeth)
        if flicker[k] != 1.0:
            frame = cv2.convertScaleAbs(frame, alpha=float(flicker[k]))
        frames[k] = frame
    return frames, out_meshes


def _lighting(rng: np.random.Generator, c: int) -> np.ndarray:
    """Per-clip lighting: channel gains (white balance) times a soft directional gradient, (c, c, 3)."""
    gains = np.exp(rng.normal(0.0, 0.04, 3))
    angle = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.0, 0.12)
    yy, xx = np.mgrid[0:c, 0:c] / max(c - 1, 1) - 0.5
    grad = 1.0 + strength * (np.cos(angle) * xx + np.sin(angle) * yy) * 2
    return (grad[..., None] * gains[None, None] * rng.uniform(0.92, 1.06)).astype(np.float32)


def generate_clip(
    speaker: Speaker, sentence: str, seed: int = 0, fps: float = 25.0, size: int = 256,
    head_motion: float = 1.0, audio_delay_frames: int = 0, head_turn: float = 1.0,
) -> PuppetClip:
    """Speak ``sentence`` as ``speaker`` and render it; everything is reproducible from ``seed``.

    head_motion scales the head's roll/scale/translation (0 holds it still); head_turn scales its out-of-plane
    yaw and pitch (0: the head turns only in the image plane, as the puppets before issue 14).
    audio_delay_frames shifts the mouth later than the sound by whole frames (a deliberate sync error, for
    testing sync checks).
    """
    if fps <= 0 or not math.isfinite(fps):
        raise LipSyncInputError(f"fps={fps}: give a positive frame rate, e.g. 25")
    if size < 64:
        raise LipSyncInputError(f"size={size}: frames must be at least 64 pixels for the face to be detectable")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x70757070]))
    speech = synthesize(sentence, speaker.voice, seed=int(rng.integers(2**31)))
    identity = make_identity(speaker.identity, int(size))
    style = speaker.style.jittered(rng)
    n = _frame_count(speech.duration, fps)
    track = articulation_track(speech.phonemes, n, fps, style)
    if audio_delay_frames:
        track = np.concatenate([np.repeat(track[:1], audio_delay_frames, 0), track[:-audio_delay_frames]])
    meshes = identity.rig.landmarks(track, style.asymmetry)
    blink = blink_curve(rng, n, fps)
    meshes += blink[:, None, None] * identity.blink[None]
    pose = None
    if head_turn:  # drawn from its own stream: every other draw of the clip is the same with or without it
        turn_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7572E]))
        pose = (smooth_noise(turn_rng, n, fps, 2) * np.array([YAW_DEG, PITCH_DEG]) * head_turn).astype(np.float32)
        meshes = turn_meshes(meshes, pose)
    motion = smooth_noise(rng, n, fps, 4) * head_motion
    head = np.stack([3.0 * motion[:, 0], 1.0 + 0.03 * motion[:, 1], 0.03 * size * motion[:, 2],
                     0.03 * size * motion[:, 3]], axis=1).astype(np.float32)
    lighting = _lighting(rng, canvas_size(size))
    flicker = (1.0 + 0.02 * smooth_noise(rng, n, fps, 1, freqs=(0.3, 1.5))[:, 0]).astype(np.float32)
    frames, out_meshes = render_frames(identity, meshes, head, int(size), lighting, flicker)
    return PuppetClip(frames, speech.audio, speech.sample_rate, float(fps), out_meshes.astype(np.float32),
                      track.astype(np.float32), head, speech.phonemes, sentence, speaker, style, seed, blink, pose)


__all__ = ["CHANNELS", "FaceFrame", "PuppetClip", "Speaker", "generate_clip", "make_speakers", "mouth_geometry",
           "turn_meshes"]
