"""Stage 2 for chunks of frames: crop, mask, encode, sample the lower half, decode, paste back."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..face import paste_back, track_faces, warp_to_crops
from ..face.align import MASK_FEATHER, MASK_POINTS
from ..models.bundle import LipSyncModels, check_framing
from ..models.precision import autocast_context
from ..motion import MOUTH_INDICES, MouthModel, mouth_opening
from ..types import FaceAnalysis, LipMotion
from .cache import BlockInputs, ReferenceInputs, RenderCache
from .codec import LatentCodec
from .conditioning import (
    mask_lower_half,
    motion_windows,
    mouth_image_points,
    mouth_map,
    nearest_by_opening,
    to_crop,
    with_clean_upper,
)
from .sampling import guided_step_count, last_guided_timestep, make_scheduler, sample_lower_half, shared_noise
from .settings import RenderSettings
from .traced import renderer_call

# Where the paste mask's points sit among the mouth model's vertices (lips, then jaw).
_MASK_IN_MOUTH = np.array([list(MOUTH_INDICES).index(i) for i in MASK_POINTS])

CropGenerator = Callable[[torch.Tensor, np.ndarray], np.ndarray]  # (crops [n,S,S,3], output indices) -> crops


class Stopwatch:
    """Seconds spent per named stage (summed over chunks): the throughput split the CLI reports."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


@dataclass
class FrameRenderer:
    """Stage 2 for chunks of frames: crop, mask, encode, sample the lower half, decode, paste back.

    Everything shared by all chunks (reference features, the one initial noise, the motion
    windows) is computed once here, so the chunk size never changes the result. Per block, the work
    before the noise (:meth:`block_inputs`) is apart from the denoising (:meth:`sample`): a
    :class:`~.cache.RenderCache` keeps the former for a re-render with another seed.
    """

    models: LipSyncModels
    codec: LatentCodec
    analysis: FaceAnalysis
    motion: LipMotion
    source_indices: np.ndarray  # (T_out,) source frame of each output frame
    reference_crops: np.ndarray  # (k, S, S, 3) float 0..1
    settings: RenderSettings = field(default_factory=RenderSettings)
    stopwatch: Stopwatch = field(default_factory=Stopwatch)
    reference_openness: np.ndarray | None = None  # (k,) mouth opening of each reference; None: measured here
    # The seed-independent work of an earlier render of the same job, bound to its inputs by the caller
    # (stages.render): reused and filled here. None: everything is computed.
    cache: RenderCache | None = None
    # The renderer's CPU graph (render.traced): None = when this render earns it back or it exists already;
    # True = now (a caller that renders again with these models: the ComfyUI nodes, a cached job); False = never.
    graph: bool | None = None

    def __post_init__(self) -> None:
        renderer = self.models.renderer
        cfg = renderer.config
        check_framing(cfg.crop_framing)
        self.device = next(renderer.parameters()).device
        src = self.source_indices
        self.windows = torch.from_numpy(
            motion_windows(self.motion.params, self.analysis.identity, self.analysis.rotations[src], cfg.motion_window)
        )
        reference = None if self.cache is None else self.cache.reference
        if reference is None:
            reference = self.encode_references()
            if self.cache is not None:
                self.cache.reference = reference
        self.reference_latents, self.reference_features = reference.latents, reference.features
        self.aligned_reference = reference.aligned
        c, h, w = self.reference_latents.shape[1:]
        self.noise = shared_noise((c, h, w), self.settings.seed, self.device)  # the only input the seed decides
        settings = self.settings  # the steps at or above this timestep are guided (fixed for the job)
        self.guided_down_to = last_guided_timestep(settings.sampler, settings.steps, settings.guided_steps)
        guided = guided_step_count(settings.steps, settings.guided_steps)
        calls = settings.steps + (guided if settings.guidance != 1.0 and renderer.can_guide else 0)
        self.network = renderer_call(renderer, len(src) * calls, self.graph)  # eager, or its CPU graph

    def encode_references(self) -> ReferenceInputs:
        """The appearance references' latents and features, and (copy path) the reference nearest each output
        frame's driving opening: shared by every chunk, independent of the seed."""
        renderer = self.models.renderer
        with torch.inference_mode(), autocast_context(self.device, self.settings.precision):
            ref = torch.from_numpy(np.ascontiguousarray(self.reference_crops, dtype=np.float32))
            ref_latents = self.codec.encode(ref).to(self.device)
            features = renderer.encode_reference(ref_latents[None])
        aligned = None
        if renderer.config.reference_concat:  # the copy path: per output frame, the reference nearest its opening
            if self.reference_openness is None:
                self.reference_openness = crop_openness(self.reference_crops, self.models.mouth)
            driving = self.models.mouth.opening(self.motion.params, self.analysis.neutral)
            aligned = nearest_by_opening(self.reference_openness, driving)
        return ReferenceInputs(ref_latents, features, aligned)

    def render(self, frames: np.ndarray, out_indices: np.ndarray, step_callback=None,
               generate: CropGenerator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """frames [n, H, W, 3] (the source frames of output frames ``out_indices``) -> (frames, masks [n, H, W]).

        Frames go through the networks in blocks aligned to absolute output indices
        (``settings.render_batch`` frames each): a frame is always computed in the same batch,
        so the result is bit-identical for any chunking whose chunks hold whole blocks
        (:meth:`RenderSettings.io_chunk`). ``generate(crops, out_indices) -> crops`` replaces the
        networks (the fidelity benchmark's resample-only, VAE-only and seam rows); cropping and
        paste-back stay exactly as in a real run.
        """
        track = self.analysis.track
        src = self.source_indices[out_indices]
        transforms = track.crop_transforms[src]
        usable = track.usable[src]
        size = self.models.renderer.config.crop_size
        out_crops = np.zeros((len(frames), size, size, 3), np.float32)
        blocks = np.asarray(out_indices) // self.settings.render_batch
        points = self.generated_mouth_points(src, out_indices)  # the mouth map's and the paste mask's
        for block in np.unique(blocks):
            todo = np.flatnonzero(usable & (blocks == block))
            if not len(todo):
                continue
            inputs = None
            if generate is None and self.cache is not None:
                inputs = self.cache.block(int(block), out_indices[todo])
            if inputs is None:
                with self.stopwatch("crop"):
                    crops = torch.from_numpy(warp_to_crops(frames[todo], transforms[todo], size))
                if generate is not None:
                    out_crops[todo] = generate(crops, out_indices[todo])
                    continue
                inputs = self.block_inputs(crops, out_indices[todo], points[todo])
                if self.cache is not None:
                    self.cache.keep(int(block), inputs)
            out_crops[todo] = self.sample(inputs, step_callback)
        with self.stopwatch("paste back"):
            out, masks = paste_back(
                frames, out_crops, transforms, landmarks=track.landmarks[src], usable=usable,
                feather=MASK_FEATHER if self.settings.feather is None else self.settings.feather,
                color_match_strength=self.settings.color_match,
                mask_points=points[:, _MASK_IN_MOUTH],
            )
        return out, masks

    def generated_mouth_points(self, src: np.ndarray, out_indices: np.ndarray) -> np.ndarray:
        """Image points (n, V, 2) of the lips and jaw the renderer is asked to draw, in each source frame's pose:
        the paste mask covers them as well as the frame's own (a jaw opened wider than in the frame is repainted
        whole) and the mouth map draws them."""
        return mouth_image_points(self.models.mouth, self.analysis.track.landmarks[src],
                                  self.motion.params[out_indices], self.analysis.neutral)

    def render_crops(self, crops: torch.Tensor, out_indices: np.ndarray, step_callback=None,
                     mouth_points: np.ndarray | None = None) -> np.ndarray:
        """One batch of face crops [n, S, S, 3] of usable frames -> generated crops [n, S, S, 3] float 0..1
        (``train eval`` renders its data set's crops with it). ``mouth_points``: the frames'
        :meth:`generated_mouth_points` when the caller has them already."""
        return self.sample(self.block_inputs(crops, out_indices, mouth_points), step_callback)

    def block_inputs(self, crops: torch.Tensor, out_indices: np.ndarray,
                     mouth_points: np.ndarray | None = None) -> BlockInputs:
        """The seed-independent part of a batch: the crops' latents (masked and clean) and the mouth maps."""
        clock, cfg = self.stopwatch, self.models.renderer.config
        with torch.inference_mode(), autocast_context(self.device, self.settings.precision):
            with clock("vae encode"):
                context = self.codec.encode(mask_lower_half(crops)).to(self.device)
                clean = self.codec.encode(crops).to(self.device)
            drawn = None
            if cfg.mouth_map_channels:  # the lips the motion asks for, where they go in each crop
                with clock("mouth map"):
                    src = self.source_indices[out_indices]
                    if mouth_points is None:
                        mouth_points = self.generated_mouth_points(src, out_indices)
                    points = to_crop(mouth_points, self.analysis.track.crop_transforms[src])
                    drawn = torch.from_numpy(mouth_map(points, cfg.crop_size, context.shape[-1]))
                    drawn = drawn.to(self.device, context.dtype)
        return BlockInputs(np.asarray(out_indices).copy(), context, clean, drawn)

    def sample(self, inputs: BlockInputs, step_callback=None) -> np.ndarray:
        """A batch's block inputs -> generated crops [n, S, S, 3] float 0..1: the denoising from the seed's
        noise and the decode (what a re-render with another seed, sampler or step count runs)."""
        clock, renderer = self.stopwatch, self.models.renderer
        inputs = inputs.on(self.device)
        context, drawn, out_indices = inputs.context, inputs.mouth_map, inputs.out_indices
        with torch.inference_mode(), autocast_context(self.device, self.settings.precision):
            motion = self.windows[out_indices].to(self.device, context.dtype)
            refs = self.reference_features
            aligned = None
            if renderer.config.reference_concat:
                aligned = self.reference_latents[torch.from_numpy(self.aligned_reference[out_indices])]

            def denoiser(sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                guided = float(t.flatten()[0]) >= self.guided_down_to
                guidance = self.settings.guidance if guided else 1.0
                return renderer.guided(sample, t, motion, guidance, masked_latent=context,
                                       reference_features=refs, reference_latent=aligned, mouth_map=drawn,
                                       call=self.network)

            with clock("denoise"):
                latents = sample_lower_half(
                    denoiser, context, self.noise, make_scheduler(self.settings.sampler), self.settings.steps,
                    step_callback,
                )
            with clock("vae decode"):
                return self.codec.decode(with_clean_upper(latents, inputs.clean)).float().cpu().numpy()


def crop_openness(crops: np.ndarray, mouth: MouthModel) -> np.ndarray:
    """Mouth opening (k,) of face crops given without their track (a style node's crops): tracked here;
    a crop where no face is found counts as the median opening of the others (0 if none)."""
    track = track_faces(np.asarray(crops), fps=25.0, crop_size=int(np.asarray(crops).shape[1]), smoothing=None)
    opening = np.full(len(track), np.nan, np.float32)
    if track.detected.any():
        opening[track.detected] = mouth_opening(mouth.align(track.landmarks[track.detected]))
    fill = float(np.nanmedian(opening)) if np.isfinite(opening).any() else 0.0
    return np.where(np.isfinite(opening), opening, fill).astype(np.float32)
