"""Faces: tracking backends, alignment to canonical crops, masks, paste-back."""
