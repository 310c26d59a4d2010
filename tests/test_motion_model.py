"""Mouth model on deformed real MediaPipe meshes: pose, PCA params, identity, files, LipLMD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lipsync_core.motion import (
    MOUTH_INDICES,
    NUM_MOUTH_VERTICES,
    MouthModel,
    lip_lmd,
    procrustes_align,
    rotation_to_vector,
    vector_to_rotation,
)
from lipsync_core.types import NUM_MOUTH_PARAMS, LipSyncInputError
from lipsync_core.weights import WeightsFileError
from tests.face_meshes import identity_mesh, talking_meshes


@pytest.fixture(scope="module")
def people():
    rng = np.random.default_rng(7)
    return [identity_mesh(rng) for _ in range(7)]


@pytest.fixture(scope="module")
def fitted(people):
    train = [talking_meshes(200, seed=i, person=p) for i, p in enumerate(people[:5])]
    model = MouthModel.fit([t["landmarks"] for t in train], num_params=NUM_MOUTH_PARAMS, identity_dim=16)
    return model, train


def _angle_deg(r_a: np.ndarray, r_b: np.ndarray) -> np.ndarray:
    rel = np.einsum("tji,tjk->tik", r_a, r_b)
    return np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))


def test_procrustes_recovers_head_rotation_while_talking():
    clip = talking_meshes(120, seed=1, pose=True)
    out = procrustes_align(clip["landmarks"])
    assert out.aligned.shape == (120, 478, 3) and out.rotation.shape == (120, 3, 3)
    err = _angle_deg(out.rotation, clip["rotations"])
    assert err.max() < 1.5 and err.mean() < 0.6, (err.mean(), err.max())
    assert np.allclose(out.scale, 150.0, rtol=0.03)  # pixels per IOD
    vec = rotation_to_vector(out.rotation)
    assert vec.shape == (120, 3)
    np.testing.assert_allclose(vector_to_rotation(vec), out.rotation, atol=1e-5)


def test_mouth_motion_does_not_leak_into_pose():
    clip = talking_meshes(120, seed=2, pose=False, noise_px=0.0)
    rot = procrustes_align(clip["landmarks"]).rotation
    leak = _angle_deg(rot, np.repeat(np.eye(3)[None], 120, axis=0))
    jaw = clip["modes"][:, 0]
    assert np.ptp(jaw) > 0.2  # the mouth really moved a lot
    assert leak.max() < 0.5, leak.max()


def test_thirteen_params_explain_the_lip_variance_and_reconstruct_held_out_people(fitted, people):
    model, _ = fitted
    assert model.num_params == 13 and model.components.shape == (13, NUM_MOUTH_VERTICES * 3)
    assert model.explained_variance_ratio >= 0.95, model.explained_variance_ratio
    # Held-out people (identities never seen) and held-out motion.
    errors, baseline = [], []
    for k, person in enumerate(people[5:]):
        clip = talking_meshes(150, seed=100 + k, person=person)
        neutral = model.neutral_shape(clip["landmarks"])
        params = model.encode(clip["landmarks"], neutral=neutral)
        assert params.shape == (150, 13)
        recon = model.decode(params, neutral=neutral)
        truth = model.align(clip["landmarks"])[:, MOUTH_INDICES]
        errors.append(np.linalg.norm(recon - truth, axis=-1).mean())
        baseline.append(np.linalg.norm(truth - truth.mean(axis=0), axis=-1).mean())
    err, base = float(np.mean(errors)), float(np.mean(baseline))
    print(f"held-out mouth vertex error {err:.4f} IOD (motion itself {base:.4f} IOD)")
    assert err < 0.006 and err < 0.15 * base


def test_params_do_not_depend_on_head_pose(people):
    model = MouthModel.fit([talking_meshes(150, seed=i, person=people[i])["landmarks"] for i in range(3)])
    still = talking_meshes(100, seed=50, person=people[3], pose=False, noise_px=0.0)
    moving = talking_meshes(100, seed=50, person=people[3], pose=True, noise_px=0.0)
    np.testing.assert_allclose(still["modes"], moving["modes"])  # same mouth motion, other head motion
    neutral = model.neutral_shape(still["landmarks"])
    p_still = model.encode(still["landmarks"], neutral)
    p_moving = model.encode(moving["landmarks"], neutral)
    scale = np.abs(p_still).mean()
    assert np.abs(p_still - p_moving).mean() < 0.05 * scale


def test_identity_code_separates_people(fitted, people):
    model, _ = fitted
    assert model.identity_dim == 16
    a1 = model.identity(talking_meshes(150, seed=11, person=people[0])["landmarks"])
    a2 = model.identity(talking_meshes(150, seed=12, person=people[0])["landmarks"])
    b = model.identity(talking_meshes(150, seed=13, person=people[1])["landmarks"])
    assert a1.shape == (16,)
    assert np.linalg.norm(a1 - a2) < 0.5 * np.linalg.norm(a1 - b)


def test_save_load_and_torch_views(fitted, tmp_path):
    model, train = fitted
    path = model.save(tmp_path / "mouth.safetensors")
    loaded = MouthModel.load(path)
    lm = train[0]["landmarks"][:20]
    np.testing.assert_allclose(loaded.encode(lm), model.encode(lm), atol=1e-5)
    comps = loaded.components_tensor()
    assert (
        isinstance(comps, torch.Tensor) and comps.shape == (13, NUM_MOUTH_VERTICES * 3) and comps.dtype == torch.float32
    )
    np.testing.assert_allclose((comps @ comps.T).numpy(), np.eye(13), atol=1e-5)
    params = torch.randn(2, 5, 13) * 0.05
    np.testing.assert_allclose(loaded.decode_torch(params).numpy(), loaded.decode(params.numpy()), atol=1e-6)
    from lipsync_core.weights import save_tensors

    other = save_tensors(tmp_path / "other.safetensors", {"x": torch.zeros(1)}, kind="motion", config={})
    with pytest.raises(WeightsFileError, match="mouth_model"):
        MouthModel.load(other)


def test_lip_lmd_is_in_iod_units(fitted):
    model, train = fitted
    params = model.encode(train[1]["landmarks"][:50])
    verts = model.decode(params)
    assert lip_lmd(verts, verts) == 0.0
    shifted = verts.copy()
    shifted[:, :, 0] += 0.01  # 1% of the eye distance
    assert lip_lmd(shifted, verts) == pytest.approx(0.01, abs=1e-6)
    # Typical error of predicting "no motion" (the mean mouth) for real motion, for scale.
    rest = model.decode(np.zeros_like(params))
    assert 0.005 < lip_lmd(rest, verts) < 0.2
    with pytest.raises(LipSyncInputError, match="shapes differ"):
        lip_lmd(verts[:10], verts)


def test_fit_rejects_bad_input():
    with pytest.raises(LipSyncInputError, match="478"):
        MouthModel.fit([np.zeros((10, 468, 3))])
    with pytest.raises(LipSyncInputError, match="NaN"):
        MouthModel.fit([np.full((30, 478, 3), np.nan)])
