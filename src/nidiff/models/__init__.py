"""Models: the contract ``out = model(x_t, t, cond)``, guidance, and analytic oracles."""

from .contract import ClassifierFreeGuidance, Denoiser, concat_cond, time_per_sample
from .empirical import EmpiricalDenoiser
from .gaussian import GaussianDenoiser

__all__ = [
    "ClassifierFreeGuidance",
    "Denoiser",
    "EmpiricalDenoiser",
    "GaussianDenoiser",
    "concat_cond",
    "time_per_sample",
]
