"""Audio: any ComfyUI AUDIO -> 16 kHz mono, features aligned to video frames."""
