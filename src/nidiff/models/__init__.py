"""Models: the contract ``out = model(x_t, t, cond)`` (:mod:`.contract`), what networks predict
(:mod:`.prediction`), guidance, analytic oracles, the adapters of diffusers networks and
Prompt-to-Prompt attention control of their UNets (:mod:`.attention`).

Names are imported on first use, so that ``import nidiff.models.contract`` (which the samplers
do) loads neither the adapters nor the attention code.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "AttentionEdit": ".attention",
    "ControlledDenoiser": ".attention",
    "controlled_attention": ".attention",
    "ClassifierFreeGuidance": ".contract",
    "Denoiser": ".contract",
    "concat_cond": ".contract",
    "time_per_sample": ".contract",
    "with_guidance": ".contract",
    "ConditionalUNetDenoiser": ".diffusers_unet",
    "UNetDenoiser": ".diffusers_unet",
    "EmpiricalDenoiser": ".empirical",
    "GaussianDenoiser": ".gaussian",
    "Data": ".prediction",
    "Epsilon": ".prediction",
    "FlowVelocity": ".prediction",
    "Prediction": ".prediction",
    "ScaledNoise": ".prediction",
    "VPrediction": ".prediction",
    "StableDiffusion": ".stable_diffusion",
    "StableDiffusionXL": ".sdxl",
    "StableDiffusion3": ".sd3",
    "Flux": ".flux",
    "FAMILIES": ".families",
    "load_pipeline": ".families",
    "ModelSpace": ".space",
    "PixelSpace": ".space",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
