"""Where the closed-mouth shortcut comes from: the share of the way the output mouth closes when a closed-mouth
motion drives open-mouthed frames, with each other input taken from open or from closed frames.

The setting of tests/test_render_fidelity.py::test_closed_mouth_motion_closes_the_mouth_even_with_open_references
(demo clip, its 12 widest-open frames rendered, 10 steps, the default guidance), and three inputs that can carry
the open mouth besides the motion, each drawn from the open target frames or from the clip's 12 most closed ones:

- context: the masked crop whose upper latent rows the renderer reads (``c``; ``u``/``l``: only its upper rows /
  only its lower rows, which start the denoising);
- clean upper: the crop latent's upper rows decoded beside the generated lower half;
- references: the three widest-open frames (the test's) or the three most closed.

A case is three letters (context, clean upper, references), ``ooo`` being the test itself. The test passes at a
share of 0.65 or more.

    OMP_NUM_THREADS=1 python benchmarks/bench_shortcut.py [--models DIR] [--cases ooo coo oco ooc]
        [--guidance 3 --guided-steps 0.5] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_core.face import track_faces, warp_to_crops  # noqa: E402
from lipsync_core.media import read_video  # noqa: E402
from lipsync_core.models.bundle import LipSyncModels  # noqa: E402
from lipsync_core.motion import mouth_opening  # noqa: E402
from lipsync_core.render.conditioning import mask_lower_half  # noqa: E402
from lipsync_core.render.frames import FrameRenderer  # noqa: E402
from lipsync_core.render.settings import RenderSettings  # noqa: E402
from lipsync_core.style import closed_mouth_params  # noqa: E402
from lipsync_core.types import DEMO_CLIPS, DEMO_MODELS, FaceAnalysis, LipMotion  # noqa: E402

TARGETS = 12  # the test's rendered frames: the widest-open of the clip
REFERENCES = 3


class SwappedInputs(FrameRenderer):
    """A FrameRenderer whose block inputs (masked context, clean latent) may come from substitute crops."""

    substitutes: torch.Tensor | None = None  # crops [T, S, S, 3], one per target, in target order
    targets: np.ndarray | None = None
    context: str = "o"
    clean: str = "o"

    def block_inputs(self, crops, out_indices, mouth_points=None):
        inputs = super().block_inputs(crops, out_indices, mouth_points)
        sub = self.substitutes[np.searchsorted(self.targets, out_indices)]
        with torch.inference_mode():
            if self.context != "o":
                other = self.codec.encode(mask_lower_half(sub)).to(self.device)
                h = other.shape[-2] // 2
                if self.context == "u":
                    other = torch.cat([other[..., :h, :], inputs.context[..., h:, :]], -2)
                elif self.context == "l":
                    other = torch.cat([inputs.context[..., :h, :], other[..., h:, :]], -2)
                inputs = dataclasses.replace(inputs, context=other)
            if self.clean != "o":
                inputs = dataclasses.replace(inputs, clean=self.codec.encode(sub).to(self.device))
        return inputs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=DEMO_MODELS)
    p.add_argument("--cases", nargs="+", default=["ooo", "coo", "oco", "ooc"])
    p.add_argument("--guidance", type=float, default=RenderSettings.guidance)
    p.add_argument("--guided-steps", type=float, default=RenderSettings.guided_steps)
    p.add_argument("--seed", type=int, default=RenderSettings.seed, help="render seed (the test: 0)")
    args = p.parse_args(argv)
    for case in args.cases:
        if len(case) != 3 or case[0] not in "oclu" or case[1] not in "oc" or case[2] not in "oc":
            p.error(f"case {case!r}: three letters, context o/c/u/l, clean upper o/c, references o/c.")
    torch.set_num_threads(1)
    models = LipSyncModels.from_folder(args.models)
    frames, fps = read_video(DEMO_CLIPS / "video.mp4")
    size = models.renderer.config.crop_size
    track = track_faces(frames, fps, crop_size=size)
    analysis = FaceAnalysis.of(track, models.mouth)
    order = np.argsort(analysis.openness)
    targets, closest = np.sort(order[-TARGETS:]), order[:TARGETS]
    closed = np.repeat(closed_mouth_params(models.mouth)[None], len(frames), axis=0)
    closed_level = float(np.quantile(analysis.openness, 0.05))
    open_level = float(analysis.openness[targets].mean())
    substitutes = torch.from_numpy(warp_to_crops(frames[closest], track.crop_transforms[closest], size))
    print(f"models {args.models}, guidance {args.guidance:g} on {args.guided_steps:g} of the steps, seed {args.seed}")
    for case in args.cases:
        refs = order[-REFERENCES:] if case[2] == "o" else order[:REFERENCES]
        renderer = SwappedInputs(models, models.codec(), analysis, LipMotion(closed, fps), np.arange(len(frames)),
                                 warp_to_crops(frames[refs], track.crop_transforms[refs], size),
                                 RenderSettings(steps=10, guidance=args.guidance, guided_steps=args.guided_steps,
                                                seed=args.seed),
                                 reference_openness=analysis.openness[refs])
        renderer.substitutes, renderer.targets, renderer.context, renderer.clean = substitutes, targets, *case[:2]
        out, _ = renderer.render(frames[targets], targets)
        again = track_faces(out, fps, crop_size=size)
        opening = float(mouth_opening(models.mouth.align(again.landmarks)).mean())
        share = 1 - (opening - closed_level) / (open_level - closed_level)
        print(f"context {case[0]}  clean upper {case[1]}  references {case[2]}:  closes {share:.0%} of the way",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
