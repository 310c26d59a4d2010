"""Puppet-world training and held-out sets, as the recipes and tests use them.

Held-out sets use another dataset seed: other speakers (unseen styles, faces varied from the same photos,
voices) saying other sentences.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from ..types import LipSyncInputError


def make_puppet_videos(out: str | os.PathLike, speakers: int, clips: int, seed: int, size: int = 128,
                       sentences_per_clip: int = 2, quiet: bool = True, workers: int = 1,
                       per_sound: bool = True) -> Path:
    """Write DIR/<speaker>/<clip>.mp4 (+ .wav, .json, .truth.npz); skipped when the manifest already exists.

    ``per_sound=False``: speakers without per-sound style (the puppets before issue 14)."""
    from ..synthetic.cli import main as synth_main

    out = Path(out)
    if (out / "manifest.json").is_file():
        return out
    argv = ["--out", str(out), "--speakers", str(speakers), "--clips", str(clips), "--seed", str(seed),
            "--size", str(size), "--sentences-per-clip", str(sentences_per_clip), "--workers", str(workers)]
    if not per_sound:
        argv.append("--global-style-only")
    sink = io.StringIO()
    with contextlib.redirect_stderr(sink) if quiet else contextlib.nullcontext():
        code = synth_main(argv)
    if code:
        raise LipSyncInputError(f"puppet data: generation failed ({sink.getvalue().strip()[-200:]}).")
    return out
