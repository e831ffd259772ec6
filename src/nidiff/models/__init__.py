"""Models: the contract ``out = model(x_t, t, cond)``, guidance, analytic oracles, and the
adapters of diffusers networks (which import diffusers only when used)."""

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
    "ClassifierFreeGuidance",
    "ConditionalUNetDenoiser",
    "Denoiser",
    "EmpiricalDenoiser",
    "GaussianDenoiser",
    "StableDiffusion",
    "UNetDenoiser",
    "concat_cond",
    "time_per_sample",
    "with_guidance",
]
