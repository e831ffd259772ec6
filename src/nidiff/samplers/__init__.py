"""Sampler step rules and the shared driver loop.

One-step rules: DDIM/DDPM (any schedule and noise), the edge-preserving posterior,
Euler-ancestral, Euler–Maruyama on the reverse SDE, flow Euler; two evaluations per step: Heun
(EDM) and flow Heun; multistep: DPM-Solver++(2M) and its SDE variant. :data:`SAMPLERS` names
them all.
"""

from .ddim import DDIM, DDPM
from .dpm_solver import DPMSolverPP, DPMState, SDEDPMSolverPP
from .edge import EdgePosterior
from .flow import FlowEuler, FlowHeun
from .forward import coefficients_at, coefficients_like, predict_x0, q_sample
from .karras import EulerAncestral, Heun
from .langevin import Langevin
from .loop import CountedModel, SampleResult, StepInfo, StepRule, sample
from .registry import SAMPLERS, SamplerInfo, build_rule, default_rule, default_sampler
from .sde import EulerMaruyama
from .transition import Transition

__all__ = [
    "DDIM",
    "DDPM",
    "SAMPLERS",
    "CountedModel",
    "DPMSolverPP",
    "DPMState",
    "EdgePosterior",
    "EulerAncestral",
    "EulerMaruyama",
    "FlowEuler",
    "FlowHeun",
    "Heun",
    "Langevin",
    "SDEDPMSolverPP",
    "SampleResult",
    "SamplerInfo",
    "StepInfo",
    "StepRule",
    "Transition",
    "build_rule",
    "coefficients_at",
    "coefficients_like",
    "default_rule",
    "default_sampler",
    "predict_x0",
    "q_sample",
    "sample",
]
