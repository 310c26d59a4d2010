"""``fit-basis``: fit the linear mouth model (Procrustes + PCA, K = 13) on the prepared clips' landmarks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..motion import MouthModel
from ..types import NUM_MOUTH_PARAMS
from .dataset import basis_path, load_dataset


def fit_basis(
    data_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    identity_dim: int = 16,
    max_frames_per_clip: int = 2000,
    seed: int = 0,
) -> tuple[MouthModel, Path]:
    """One track per clip (its own neutral), usable frames only; long clips are subsampled evenly."""
    clips = load_dataset(data_dir, min_frames=NUM_MOUTH_PARAMS + 1)
    tracks = []
    for c in clips:
        idx = np.flatnonzero(c.usable)
        if len(idx) > max_frames_per_clip:
            idx = idx[np.linspace(0, len(idx) - 1, max_frames_per_clip).round().astype(int)]
        tracks.append(c.landmarks[idx])
    mouth = MouthModel.fit(tracks, identity_dim=identity_dim)
    mouth.info.update({"fitted_on": str(data_dir), "speakers": len({c.speaker for c in clips})})
    path = Path(out) if out else basis_path(data_dir)
    if path.suffix != ".safetensors":
        path = path / "mouth_model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    mouth.save(path)
    print(f"fit-basis: {len(tracks)} clips, {sum(len(t) for t in tracks)} frames; the {mouth.num_params} params "
          f"explain {100 * mouth.explained_variance_ratio:.1f}% of the mouth variance -> {path}")
    return mouth, path
