"""Where the closed-mouth shortcut comes from: the share of the way the output mouth closes when a closed-mouth
motion drives open-mouthed frames, with each other input taken from open or from closed frames.

The setting of tests/test_render_fidelity.py::test_closed_mouth_motion_closes_the_mouth_even_with_open_references,
built by the one function both call (``lipsync_core.train.fidelity.closed_mouth_scene``)
(demo clip, its 12 widest-open frames rendered, the default steps and guidance), and three inputs that can carry
the open mouth besides the motion, each drawn from the open target frames or from the clip's 12 most closed ones:

- context: the masked crop whose upper latent rows the renderer reads (``c``; ``u``/``l``: only its upper rows /
  only its lower rows, which start the denoising);
- clean upper: the crop latent's upper rows decoded beside the generated lower half;
- references: the three widest-open frames (the test's) or the three most closed.

A case is three letters (context, clean upper, references), ``ooo`` being the test itself. The test passes at a
share of 0.65 or more.

    OMP_NUM_THREADS=1 python benchmarks/bench_shortcut.py [--models DIR] [--cases ooo coo oco ooc]
        [--steps 4 --guidance 3 --guided-steps 0.5] [--seed 0]
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

from lipsync_core.media import read_video  # noqa: E402
from lipsync_core.models.bundle import LipSyncModels  # noqa: E402
from lipsync_core.render.conditioning import mask_lower_half  # noqa: E402
from lipsync_core.render.frames import FrameRenderer  # noqa: E402
from lipsync_core.render.settings import RenderSettings  # noqa: E402
from lipsync_core.train.fidelity import closed_mouth_scene  # noqa: E402
from lipsync_core.types import DEMO_CLIPS, DEMO_MODELS  # noqa: E402


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
    p.add_argument("--steps", type=int, default=RenderSettings.steps)
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
    scene = closed_mouth_scene(models, frames, fps)
    substitutes = torch.from_numpy(scene.crops(scene.reference_frames(open_mouth=False, count=len(scene.targets))))
    print(f"models {args.models}, {args.steps} steps, guidance {args.guidance:g} on {args.guided_steps:g} of them, "
          f"seed {args.seed}")
    for case in args.cases:
        refs = scene.reference_frames(open_mouth=case[2] == "o")
        renderer = SwappedInputs(models, models.codec(), scene.analysis, scene.motion, np.arange(len(frames)),
                                 scene.crops(refs),
                                 RenderSettings(steps=args.steps, guidance=args.guidance,
                                                guided_steps=args.guided_steps, seed=args.seed),
                                 reference_openness=scene.analysis.openness[refs])
        renderer.substitutes, renderer.targets, renderer.context, renderer.clean = substitutes, scene.targets, *case[:2]
        out, _ = renderer.render(frames[scene.targets], scene.targets)
        share, _ = scene.share_closed(models, out)
        print(f"context {case[0]}  clean upper {case[1]}  references {case[2]}:  closes {share:.0%} of the way",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
