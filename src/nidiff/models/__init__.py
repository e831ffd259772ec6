"""Models: the contract ``out = model(x_t, t, cond)``, guidance, analytic oracles, and the
adapters of diffusers networks (which import diffusers only when used), and Prompt-to-Prompt
attention control of their UNets (:mod:`.attention`)."""

from .attention import AttentionEdit, ControlledDenoiser, controlled_attention
from .contract import (
    ClassifierFreeGuidance,
    Denoiser,
    concat_cond,
    time_per_sample,
    with_guidance,
)
from .diffusers_unet import ConditionalUNetDenoiser, UNetDenoiser
from .empirical import EmpiricalDenoiser
from .gaussian import GaussianDenoiser
from .stable_diffusion import StableDiffusion

__all__ = [
    "AttentionEdit",
    "ClassifierFreeGuidance",
    "ConditionalUNetDenoiser",
    "ControlledDenoiser",
    "Denoiser",
    "EmpiricalDenoiser",
    "GaussianDenoiser",
    "StableDiffusion",
    "UNetDenoiser",
    "concat_cond",
    "controlled_attention",
    "time_per_sample",
    "with_guidance",
]
