"""``python -m lipsync_core.synthetic``: generate a puppet-world dataset (see docs/PUPPET_WORLD.md)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..types import LipSyncInputError


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--out", required=True, help="output folder (DIR/<speaker_id>/<clip_id>.mp4 ...)")
    parser.add_argument("--speakers", type=int, default=4, help="number of speakers")
    parser.add_argument("--clips", type=int, default=4, help="clips per speaker")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed: speakers, sentences, renditions")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--size", type=int, default=256, help="frame width = height in pixels")
    parser.add_argument("--sentences-per-clip", type=int, default=2, help="sentences spoken in one clip")
    parser.add_argument("--shared-sentences", action="store_true",
                        help="every speaker says the same sentences (clip j of each speaker has the same text)")
    parser.add_argument("--global-style-only", action="store_true",
                        help="speakers without per-sound style (the puppets before issue 14; faces, voices and "
                             "global style parameters are the same)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes; every clip has its own seed, so the output does not depend on this")
    parser.set_defaults(func=run)
    return parser


def clip_sentence(seed: int, speaker_index: int, clip_index: int, per_clip: int, shared: bool) -> str:
    """The text of one clip, reproducible from the dataset seed and the clip's position."""
    from .sentences import make_sentence

    key = [seed, 0x5E47, clip_index] if shared else [seed, 0x5E47, clip_index, speaker_index + 1]
    rng = np.random.default_rng(np.random.SeedSequence(key))
    return " ".join(make_sentence(rng) for _ in range(per_clip))


def _write_one(speaker, out: str, seed: int, index: int, clip_index: int, per_clip: int, shared: bool,
               fps: float, size: int) -> dict:
    """Generate and write one clip; its manifest row. Module-level so worker processes can run it."""
    from .clip import generate_clip
    from .io import write_clip

    text = clip_sentence(seed, index, clip_index, per_clip, shared)
    clip_seed = int(np.random.SeedSequence([seed, index, clip_index]).generate_state(1)[0])
    clip = generate_clip(speaker, text, seed=clip_seed, fps=fps, size=size)
    clip_id = f"clip{clip_index:04d}"
    write_clip(clip, Path(out), clip_id)
    return {"speaker_id": speaker.speaker_id, "clip_id": clip_id, "sentence": text, "n_frames": clip.n_frames,
            "fps": clip.fps, "video": f"{speaker.speaker_id}/{clip_id}.mp4"}


def run(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from tqdm import tqdm

    from .clip import make_speakers

    if args.clips < 1 or args.sentences_per_clip < 1:
        raise LipSyncInputError("--clips and --sentences-per-clip must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    speakers = make_speakers(args.speakers, args.seed, per_sound=not args.global_style_only)
    (out / "speakers.json").write_text(json.dumps([s.to_dict() for s in speakers], indent=1))
    jobs = [(speaker, str(out), args.seed, i, j, args.sentences_per_clip, args.shared_sentences, args.fps, args.size)
            for i, speaker in enumerate(speakers) for j in range(args.clips)]
    manifest, frames, t0 = [], 0, time.perf_counter()
    workers = max(1, min(args.workers, len(jobs)))
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else None
    try:
        rows = pool.map(_write_one, *zip(*jobs, strict=True)) if pool else (_write_one(*job) for job in jobs)
        with tqdm(total=len(jobs), desc="puppet clips", unit="clip") as bar:
            for row in rows:  # in job order whatever the worker count: the manifest is reproducible
                manifest.append(row)
                frames += row["n_frames"]
                bar.update(1)
                bar.set_postfix(fps=f"{frames / (time.perf_counter() - t0):.0f}")
    finally:
        if pool:
            pool.shutdown()
    (out / "manifest.json").write_text(json.dumps({"seed": args.seed, "fps": args.fps, "size": args.size,
                                                   "clips": manifest}, indent=1))
    seconds = frames / args.fps
    print(f"wrote {len(manifest)} clips, {frames} frames ({seconds / 60:.1f} min of video) to {out} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m lipsync_core.synthetic", description=__doc__))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except LipSyncInputError as exc:
        parser.exit(2, f"error: {exc}\n")
