"""The paper's two networks: the stage-1 motion Transformer and the stage-2 U-Net.

Modules: ``attention`` (the one attention function + ComfyUI hook), ``motion`` (stage 1),
``renderer`` (stage 2), ``io`` (safetensors save/load), ``precision`` (autocast choices).
The function ``attention`` is imported from ``lipsync_core.models.attention`` (not re-exported
here, so the submodule name is not shadowed).
"""

from .attention import attention_override, current_backend, set_attention_override
from .io import load_model, save_model
from .motion import LipMotionTransformer, ReferenceMemory, motion_loss
from .precision import autocast_context
from .renderer import LipRenderUNet, ReferenceFeatures, lower_half_mask, modulated_conv2d, renderer_loss

__all__ = [
    "LipMotionTransformer",
    "LipRenderUNet",
    "ReferenceFeatures",
    "ReferenceMemory",
    "attention_override",
    "autocast_context",
    "current_backend",
    "load_model",
    "lower_half_mask",
    "modulated_conv2d",
    "motion_loss",
    "renderer_loss",
    "save_model",
    "set_attention_override",
]
