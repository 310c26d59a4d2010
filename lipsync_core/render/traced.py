"""The renderer's U-Net as a frozen TorchScript graph for CPU inference.

On the CPU the denoising is most of a render, and the U-Net is small: a call is some 400 small ops whose
Python dispatch, and whose unfused bias/activation passes, cost about a fifth of its time. A frozen trace
(weights folded in as constants, conv + bias + add fused by the JIT) runs the same maths about 1.2-1.3x
faster (``benchmarks/bench_seed_change.py`` prints both); tracing and freezing cost about 0.7 s of CPU once.

When to pay that: a render whose work (frames x network calls) earns it back traces at once
(:data:`TRACE_MIN_FRAME_CALLS`); a caller whose renderer stays loaded for many renders (the ComfyUI nodes,
where a seed change re-renders the same job) asks for it up front (``graph=True``). Once traced, a renderer
keeps its graphs (one per kind of input: which context inputs it gets, and its latent shape) for every
later render in the process, so the renders of one process stay consistent with each other. The choice is
made per render, before its first block: chunking never changes a frame.

The graph runs only where it is the same computation: CPU, float32 weights and inputs, no autocast, the
renderer in eval mode, no gradient. Anything else (CUDA, bf16, training) runs the eager module. Outputs
match the eager ones to float rounding (about 1e-6), not bit for bit.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..models.renderer import LipRenderUNet, ReferenceFeatures

TRACE_MIN_FRAME_CALLS = 1200
"""A render with at least this many frame-calls (a frame through the U-Net once: guided steps count twice)
traces the renderer even when the caller will not render again: at about 0.6-0.8 ms saved a frame-call on
this CPU, it earns back the trace's 0.7 s (``benchmarks/bench_seed_change.py``)."""

CONTEXT_INPUTS = ("masked_latent", "reference_latent", "mouth_map")
"""The renderer's optional per-frame context inputs, in the order the graph takes them."""


class _Call(nn.Module):
    """The renderer's forward with one fixed set of optional inputs, as positional tensors (what a trace takes)."""

    def __init__(self, renderer: LipRenderUNet, present: tuple[str, ...], sizes: list[tuple[int, int]] | None):
        super().__init__()
        self.renderer, self.present, self.sizes = renderer, present, sizes

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, motion: torch.Tensor,
                *inputs: torch.Tensor) -> torch.Tensor:
        context = dict(zip(self.present, inputs[: len(self.present)], strict=True))
        tokens = list(inputs[len(self.present):])
        features = ReferenceFeatures(tokens, self.sizes) if tokens else None
        return self.renderer(sample, timestep, motion, reference_features=features, **context)


@dataclass
class _Graphs:
    """A renderer's traced graphs by kind of input; None where tracing failed (that kind stays eager)."""

    weights: tuple
    graphs: dict[tuple, torch.jit.ScriptModule | None] = field(default_factory=dict)


_TRACED: weakref.WeakKeyDictionary[LipRenderUNet, _Graphs] = weakref.WeakKeyDictionary()


def _version(tensor: torch.Tensor) -> int:
    """How often ``tensor`` was written in place; 0 for an inference tensor (loaded under inference mode, as
    ComfyUI does: it keeps no counter, and no training can write it)."""
    try:
        return tensor._version
    except RuntimeError:
        return 0


def _weights_key(renderer: LipRenderUNet) -> tuple:
    """Where the weights live and how often they were written: a graph holds a copy of them, so a renderer
    moved, cast or trained since its trace is traced again."""
    return tuple((p.data_ptr(), _version(p), p.dtype, p.device) for p in renderer.parameters())


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch before 2.4
        return torch.is_autocast_cpu_enabled()


def _graph_runs_here(renderer: LipRenderUNet, sample: torch.Tensor) -> bool:
    """Whether the graph is the same computation as the module here: CPU, float32, eval, no autocast, no grad."""
    return (sample.device.type == "cpu" and sample.dtype == torch.float32 and not renderer.training
            and renderer.conv_in.weight.dtype == torch.float32 and not _cpu_autocast()
            and not torch.is_grad_enabled())


def is_traced(renderer: LipRenderUNet, weights: tuple | None = None) -> bool:
    """Whether ``renderer`` has CPU graphs for its current weights (later renders use them); ``weights``: its
    :func:`_weights_key` when the caller has it already."""
    held = _TRACED.get(renderer)
    return held is not None and held.weights == (_weights_key(renderer) if weights is None else weights)


def renderer_call(renderer: LipRenderUNet, frame_calls: int, graph: bool | None = None) -> Callable[..., torch.Tensor]:
    """The callable a render runs the U-Net with (the signature of ``renderer.__call__``).

    ``graph=None`` (auto): the frozen CPU graph when the renderer is traced already or this render does enough
    work to earn the trace back (``frame_calls`` >= :data:`TRACE_MIN_FRAME_CALLS`), else the eager module;
    ``True``: the graph, traced now if need be (a caller that renders again with these models); ``False``:
    always the eager module (comparisons, benchmarks)."""
    if graph is False:
        return renderer
    # Checked once per render, not per call (walking a few hundred parameters cost about 10% of a demo
    # denoise on the host): a render never moves, casts or trains its renderer.
    weights = _weights_key(renderer)
    if graph is None and frame_calls < TRACE_MIN_FRAME_CALLS and not is_traced(renderer, weights):
        return renderer

    def call(sample: torch.Tensor, timestep: torch.Tensor, motion: torch.Tensor,
             reference_features: ReferenceFeatures | None = None, **context: torch.Tensor | None) -> torch.Tensor:
        if not _graph_runs_here(renderer, sample):
            return renderer(sample, timestep, motion, reference_features=reference_features, **context)
        present = tuple(name for name in CONTEXT_INPUTS if context.get(name) is not None)
        tokens = [] if reference_features is None else list(reference_features.tokens)
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        shared = bool(tokens) and tokens[0].shape[0] == 1 and sample.shape[0] > 1  # one reference set for all
        sizes = None if reference_features is None else reference_features.sizes
        kind = (present, tuple(sample.shape[1:]), tuple(motion.shape[1:]), len(tokens), shared,
                None if sizes is None else tuple(map(tuple, sizes)))
        inputs = (sample, timestep, motion, *[context[n] for n in present], *tokens)  # the graph's order
        graph = _graph(renderer, weights, kind, inputs, present, sizes)
        if graph is None:
            return renderer(sample, timestep, motion, reference_features=reference_features, **context)
        return graph(*inputs)

    return call


def _graph(renderer: LipRenderUNet, weights: tuple, kind: tuple, example: tuple, present: tuple[str, ...],
           sizes: list[tuple[int, int]] | None) -> torch.jit.ScriptModule | None:
    """The graph of ``renderer`` (whose :func:`_weights_key` is ``weights``) for this kind of input, traced and
    frozen on first use; None if that fails (``torch.jit`` is deprecated in recent torch: the eager module then
    goes on running)."""
    held = _TRACED.get(renderer)
    if held is None or held.weights != weights:
        held = _TRACED[renderer] = _Graphs(weights)
    if kind not in held.graphs:
        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")  # TracerWarning on shape arithmetic, DeprecationWarning of torch.jit
                plain = tuple(t.clone() for t in example)  # inference tensors cannot enter a trace
                traced = torch.jit.trace(_Call(renderer, present, sizes).eval(), plain, check_trace=False)
                held.graphs[kind] = torch.jit.freeze(traced)
        except Exception:  # noqa: BLE001 - any tracing failure leaves the eager module
            held.graphs[kind] = None
    return held.graphs[kind]
