"""Mouth model: Procrustes alignment, pose, PCA mouth params, identity code."""
