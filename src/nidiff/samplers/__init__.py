"""Sampler step rules (DDIM, DDPM, the edge-preserving posterior) and the shared driver loop."""

from .ddim import DDIM, DDPM
from .edge import EdgePosterior
from .forward import coefficients_like, predict_x0, q_sample
from .loop import SampleResult, StepInfo, StepRule, sample
from .transition import Transition

__all__ = [
    "DDIM",
    "DDPM",
    "EdgePosterior",
    "SampleResult",
    "StepInfo",
    "StepRule",
    "Transition",
    "coefficients_like",
    "predict_x0",
    "q_sample",
    "sample",
]
