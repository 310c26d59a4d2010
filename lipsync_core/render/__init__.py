"""Stage-2 sampling: schedulers, shared initial noise, lower-half denoising, chunking."""
