"""Every test sees the pack as ComfyUI loads it: see tests/pack_loader.py."""

from pack_loader import load_pack

load_pack()
