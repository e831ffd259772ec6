r"""A UNet on a variance-exploding (NI-SMLD) schedule: the network's input and time, scaled.

On a VE schedule :math:`x_\sigma = x_0 + \sigma\Sigma^{1/2}\varepsilon` grows to
:math:`\sigma_{max}` (50) while the time is :math:`\sigma \in [\sigma_{min}, \sigma_{max}]`, four
decades that a DDPM-style sinusoidal time embedding (periods up to 10⁴ over times 0..999) would
barely tell apart at the bottom. The network therefore sees (Karras et al. 2022, EDM Table 1's
:math:`c_{in}`, with a log-σ time as in SMLD's noise-conditional networks)

.. math:: \mathrm{net}\Bigl(\frac{x_\sigma}{\sqrt{\sigma^2 + \sigma_{data}^2}},\;
          1 + 999\,\frac{\ln\sigma - \ln\sigma_{min}}{\ln\sigma_{max} - \ln\sigma_{min}}\Bigr)
          = \hat\varepsilon,

a unit-scale input and a time on the DDPM models' range ``[1, 1000]``; the output is still the
white :math:`\hat\varepsilon` of the contract. :func:`unet_denoiser` is the one place that picks
the wrapper from the schedule (training, loading and previews all call it).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..schedule import Schedule, VESchedule
from .contract import time_per_sample
from .diffusers_unet import UNetDenoiser

__all__ = ["SIGMA_DATA", "VEUNetDenoiser", "unet_denoiser"]

#: :math:`\sigma_{data}` of the input scaling (EDM's 0.5, for data in [-1, 1]).
SIGMA_DATA = 0.5


class VEUNetDenoiser(UNetDenoiser):
    """:class:`UNetDenoiser` with the VE input and time scaling of the module docstring."""

    def __init__(self, unet: nn.Module, schedule: VESchedule):
        super().__init__(unet)
        self.sigma_max, self.sigma_min = schedule.t_max, schedule.sigma_min

    def network_time(self, sigma: Tensor) -> Tensor:
        """The time the network sees for noise level ``sigma`` (``(B,)``, float64)."""
        lo, hi = math.log(self.sigma_min), math.log(self.sigma_max)
        return 1.0 + 999.0 * (sigma.clamp_min(1e-12).log() - lo) / (hi - lo)

    def forward(self, x_t: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
        sigma = time_per_sample(torch.as_tensor(t), x_t).to(torch.float64)
        c_in = (sigma.square() + SIGMA_DATA**2).rsqrt().reshape(-1, *[1] * (x_t.ndim - 1))
        return super().forward(x_t * c_in.to(x_t), self.network_time(sigma), cond)


def unet_denoiser(unet: nn.Module, schedule: Schedule) -> UNetDenoiser:
    """The nidiff model of a UNet trained on ``schedule``: :class:`VEUNetDenoiser` on a VE
    schedule, the plain :class:`UNetDenoiser` otherwise."""
    if isinstance(schedule, VESchedule):
        return VEUNetDenoiser(unet, schedule)
    return UNetDenoiser(unet)
