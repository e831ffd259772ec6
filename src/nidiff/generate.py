"""Sampling from a trained model: prior draw, optional guidance, one driver loop."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .models.contract import ClassifierFreeGuidance, Denoiser
from .noise import IsotropicNoise, NoiseModel
from .samplers import sample
from .schedule import TimeGrid

__all__ = ["generate", "prior_noise"]


def prior_noise(noise: NoiseModel | None) -> NoiseModel:
    """The noise model of :math:`x_T`: the process's own Σ, isotropic for edge-preserving noise
    (its σ_T is isotropic because τ(T) = 1) or none given."""
    if noise is None or noise.data_conditioned:
        return IsotropicNoise()
    return noise


def generate(
    model: Denoiser,
    rule,
    grid: TimeGrid,
    shape: Sequence[int],
    *,
    noise=None,
    labels: Tensor | None = None,
    guidance: float = 1.0,
    null_class: int | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    prior_std: float = 1.0,
) -> Tensor:
    r"""Draw ``x_T = prior_std · Σ^{1/2} z`` and run ``rule`` over ``grid``; returns ``x_0`` of
    ``shape``. ``prior_std`` is the schedule's (``schedule.prior_std``: 1 on variance-preserving
    schedules, :math:`\sigma_{max}` on a VE one).

    With ``labels`` and ``guidance != 1``, classifier-free guidance uses the reserved
    ``null_class`` as the unconditional label.
    """
    z = torch.randn(
        tuple(shape),
        generator=generator,
        dtype=dtype,
        device=generator.device if generator is not None else device,
    )
    x_T = prior_noise(noise).color(z.to(device))
    x_T = x_T if prior_std == 1.0 else prior_std * x_T
    cond = labels.to(device) if labels is not None else None
    if cond is not None and guidance != 1.0:
        if null_class is None:
            raise ValueError("guidance needs the model's null_class")
        model = ClassifierFreeGuidance(model, guidance, torch.tensor([null_class], device=device))
    with torch.no_grad():
        return sample(model, x_T, grid, rule, cond=cond, noise=generator).x0
