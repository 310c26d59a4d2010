"""StyleLipSync core library: style-preserving, audio-driven lip sync.

Everything here is plain torch + numpy and never imports ComfyUI; the node
adapters in ``nodes/`` depend on this package, never the other way round.
"""

__version__ = "0.1.0"
