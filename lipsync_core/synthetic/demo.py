"""Make the committed demo clips (lipsync_core/assets/demo/): ``python -m lipsync_core.synthetic.demo --out DIR``.

One puppet speaker "A" says three sentences:
  video.*      sentence 1: the input video to re-dub;
  reference.*  sentence 2: A's style reference clip (video + its audio);
  target.*     sentence 3: ``target.wav`` is the new audio; ``target.mp4`` / ``target.truth.npz`` are the ground
               truth of A saying it (what an ideal, style-preserving re-dub of ``video`` should show).
A second speaker "B" (another face variant and style) says sentence 3 too (``other_style.*``), so a demo or test can
show that A's style reference gives A's lips, not B's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .clip import generate_clip, make_speakers
from .io import write_clip

DEMO_SEED = 7
DEMO_SIZE = 256
DEMO_FPS = 25.0
SENTENCES = {
    "video": "Maybe Bob will move the purple boat.",
    "reference": "Why did you open the window? Wow, it was warm.",
    "target": "Peter bought a blue balloon for me.",
}


def make_demo(out: str | Path) -> dict:
    out = Path(out)
    # the demo clips stay in the puppet world the shipped weights were trained and tested on (no per-sound style,
    # no out-of-plane turn); regenerate them in the current world with the next demo retraining
    a, b = make_speakers(2, DEMO_SEED, per_sound=False)
    index = {"speaker_a": a.to_dict(), "speaker_b": b.to_dict(), "fps": DEMO_FPS, "size": DEMO_SIZE, "clips": {}}
    jobs = [(a, "video", 1), (a, "reference", 2), (a, "target", 3), (b, "other_style", 3)]
    for speaker, name, seed in jobs:
        text = SENTENCES.get(name, SENTENCES["target"])
        clip = generate_clip(speaker, text, seed=seed, fps=DEMO_FPS, size=DEMO_SIZE, head_turn=0.0)
        paths = write_clip(clip, out / "_tmp", name)
        for kind, path in paths.items():
            final = out / path.name
            final.write_bytes(path.read_bytes())
            path.unlink()
            index["clips"].setdefault(name, {})[kind] = final.name
        index["clips"][name].update({"speaker": speaker.speaker_id, "sentence": text, "n_frames": clip.n_frames})
        (out / "_tmp" / speaker.speaker_id).rmdir()
    (out / "_tmp").rmdir()
    (out / "demo.json").write_text(json.dumps(index, indent=1))
    return index


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lipsync_core.synthetic.demo", description=__doc__)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    index = make_demo(args.out)
    print(json.dumps({k: v["sentence"] for k, v in index["clips"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
