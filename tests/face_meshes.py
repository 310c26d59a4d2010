"""Talking-face meshes for tests: a real MediaPipe mesh deformed by smooth mouth motion + head pose.

The base mesh is MediaPipe's mesh of ``skimage.data.astronaut()``, frontalised into IOD units.
Seven smooth mouth modes (jaw, width, pucker, smile, upper-lip raise, lower-lip drop, asymmetry)
are driven by random sums of sinusoids; each "person" also gets a random identity deformation.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.spatial.transform import Rotation

from lipsync_core.face import topology
from lipsync_core.face.template import frontalise

NUM_MODES = 7


@functools.lru_cache(maxsize=1)
def astronaut_mesh_pixels() -> np.ndarray:
    """(478, 3) MediaPipe landmarks of the astronaut photo (the torch face mesh), in pixels."""
    import skimage.data

    from lipsync_core.face.backends import TorchMeshBackend

    backend = TorchMeshBackend(25.0, max_faces=1, static=True, device="cpu")
    try:
        faces = backend.process(skimage.data.astronaut())
    finally:
        backend.close()
    assert faces, "the face mesh did not find the astronaut's face"
    return faces[0].landmarks.astype(np.float64)


def base_mesh() -> np.ndarray:
    return frontalise(astronaut_mesh_pixels()).astype(np.float64)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def mode_fields(mesh: np.ndarray) -> np.ndarray:
    """(NUM_MODES, 478, 3) displacement per unit of each mouth mode, for a frontal mesh in IOD units."""
    stomion = mesh[[topology.UPPER_INNER_LIP, topology.LOWER_INNER_LIP]].mean(axis=0)
    corners = mesh[list(topology.MOUTH_CORNERS)]
    centre = corners.mean(axis=0)
    rel = mesh - centre
    near = np.exp(-(rel[:, 0] ** 2 + rel[:, 1] ** 2) / (2 * 0.4**2))  # around the mouth
    below = _smoothstep((mesh[:, 1] - stomion[1]) / 0.12)  # lower lip, jaw, chin
    above = _smoothstep((stomion[1] - mesh[:, 1]) / 0.08) * near
    jaw_fade = np.exp(-(rel[:, 0] ** 2) / (2 * 0.75**2)) * _smoothstep((mesh[:, 1] - stomion[1] + 0.3) / 0.3)
    f = np.zeros((NUM_MODES, len(mesh), 3))
    f[0, :, 1] = below * jaw_fade  # jaw opening
    f[0, :, 2] = 0.3 * below * jaw_fade
    f[1, :, 0] = rel[:, 0] * near  # mouth width
    f[2, :, 2] = -near  # pucker: lips forward ...
    f[2, :, 0] = -0.6 * rel[:, 0] * near  # ... and narrower
    f[3, :, 1] = -(rel[:, 0] ** 2) * 4 * near  # smile: corners up
    f[3, :, 0] = 0.3 * rel[:, 0] * near
    f[4, :, 1] = -above  # upper lip raise
    f[5, :, 1] = below * near * (1 - jaw_fade * 0.5)  # lower lip drop
    f[6, :, 1] = rel[:, 0] * near  # asymmetry
    # Eyes, nose and upper face barely move when a person speaks (10% of the field here).
    f[:, topology.as_array(topology.RIGID)] *= 0.1
    return f


MODE_RANGES = np.array(
    [[-0.05, 0.3], [-0.08, 0.08], [-0.06, 0.06], [0.0, 0.08], [0.0, 0.05], [0.0, 0.06], [-0.04, 0.04]]
)


def smooth_series(rng: np.random.Generator, num_frames: int, fps: float, dims: int) -> np.ndarray:
    """(T, dims) smooth random signals in 0..1 (sums of three sinusoids, 0.3..4 Hz)."""
    t = np.arange(num_frames)[:, None, None] / fps
    freq = rng.uniform(0.3, 4.0, size=(1, dims, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(1, dims, 3))
    amp = rng.uniform(0.5, 1.0, size=(1, dims, 3))
    s = (amp * np.sin(2 * np.pi * freq * t + phase)).sum(axis=-1) / amp.sum(axis=-1)
    return 0.5 + 0.5 * s


def identity_mesh(rng: np.random.Generator, base: np.ndarray | None = None) -> np.ndarray:
    """A different 'person': the base mesh with random face width, mouth width, lip thickness, chin length."""
    mesh = (base_mesh() if base is None else base).copy()
    fields = mode_fields(mesh)
    stomion = mesh[[topology.UPPER_INNER_LIP, topology.LOWER_INNER_LIP]].mean(axis=0)
    mesh[:, 0] *= 1 + rng.uniform(-0.06, 0.06)
    mesh += rng.uniform(-0.5, 0.5) * fields[1]  # mouth width
    lips = list(topology.LIPS)
    mesh[lips, 1] = stomion[1] + (mesh[lips, 1] - stomion[1]) * (1 + rng.uniform(-0.2, 0.2))
    mesh += rng.uniform(-0.06, 0.06) * fields[0] / max(fields[0, :, 1].max(), 1e-9)  # chin length
    return mesh


def talking_meshes(
    num_frames: int,
    seed: int,
    person: np.ndarray | None = None,
    fps: float = 25.0,
    pose: bool = True,
    noise_px: float = 0.2,
    pixels_per_iod: float = 150.0,
) -> dict[str, np.ndarray]:
    """A talking person: landmarks in pixels (T, 478, 3), plus the ground truth behind them."""
    rng = np.random.default_rng(seed)
    person = base_mesh() if person is None else person
    fields = mode_fields(person)
    weights = MODE_RANGES[:, 0] + smooth_series(rng, num_frames, fps, NUM_MODES) * (
        MODE_RANGES[:, 1] - MODE_RANGES[:, 0]
    )
    aligned = person[None] + np.einsum("tm,mnd->tnd", weights, fields)
    if pose:
        angles = (smooth_series(rng, num_frames, fps * 3, 3) - 0.5) * np.radians([30, 20, 20])  # yaw, pitch, roll
        rot = Rotation.from_euler("YXZ", angles).as_matrix()
    else:
        rot = np.repeat(np.eye(3)[None], num_frames, axis=0)
    shift = np.array([320.0, 260.0, 0.0]) + (smooth_series(rng, num_frames, fps, 3) - 0.5) * [40, 30, 0]
    landmarks = pixels_per_iod * np.einsum("tij,tnj->tni", rot, aligned) + shift[:, None, :]
    landmarks += rng.normal(0, noise_px, landmarks.shape)
    return {"landmarks": landmarks, "aligned": aligned, "rotations": rot, "modes": weights}
