r"""The variance-exploding schedule (Song & Ermon, 2019; NI-SMLD of the GFF paper):
:math:`\alpha_t = 1`, :math:`\sigma_t = t` on ``t ∈ [0, sigma_max]``.

Time is the noise level itself (the convention of EDM and of :mod:`nidiff.smld`, whose models
take :math:`\sigma` as their time argument), so :math:`x_t = x_0 + t\,\Sigma^{1/2}\varepsilon`.
SMLD's geometric noise levels are a grid on this schedule (:func:`geometric_grid`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .base import Schedule
from .grid import TimeGrid, custom_grid

__all__ = ["VESchedule", "geometric_grid"]


class VESchedule(Schedule):
    r""":math:`\alpha_t = 1`, :math:`\sigma_t = t`, ``t_max = sigma_max``; the prior is
    :math:`\mathcal N(0, \sigma_{max}^2\Sigma)` (``prior_std = sigma_max``).

    ``sigma_min`` is the smallest noise level a model of this schedule is trained on (SMLD's
    :math:`\sigma_L`): the bottom of its sampling ladder (:func:`geometric_grid`) and the
    reference of annealed Langevin's step size (:class:`~nidiff.samplers.langevin.Langevin`).
    """

    def __init__(self, sigma_max: float = 50.0, sigma_min: float = 0.01):
        for name, v in (("sigma_max", sigma_max), ("sigma_min", sigma_min)):
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name}={v!r} must be a finite number > 0")
        if not sigma_min < sigma_max:
            raise ValueError(f"need sigma_min < sigma_max, got {sigma_min=}, {sigma_max=}")
        self.t_max = float(sigma_max)
        self.prior_std = float(sigma_max)
        self.sigma_min = float(sigma_min)

    def _log_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(t), torch.log(t)

    def _time_of_log_snr(self, log_snr: Tensor) -> Tensor:
        return torch.exp(-0.5 * log_snr)

    def coefficients(self, t: float | Tensor) -> tuple[Tensor, Tensor]:
        tt = self.check_time(t)
        return torch.ones_like(tt), tt.clone()

    def sigma2(self, t: float | Tensor) -> Tensor:
        return self.check_time(t).square()

    def velocity_coefficients(self, t: float | Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`(\dot\alpha, \dot\sigma) = (0, 1)`."""
        tt = self.check_time(t)
        return torch.zeros_like(tt), torch.ones_like(tt)

    def drift_diffusion(self, t: float | Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`f = 0`, :math:`g^2 = d\sigma^2/dt = 2t`."""
        tt = self.check_time(t)
        return torch.zeros_like(tt), 2.0 * tt

    def to_spec(self) -> dict:
        return {"kind": "ve", "sigma_max": self.t_max, "sigma_min": self.sigma_min}

    def __repr__(self) -> str:
        return f"VESchedule(sigma_max={self.t_max:g}, sigma_min={self.sigma_min:g})"


def geometric_grid(sigma_max: float, sigma_min: float, steps: int) -> TimeGrid:
    """``steps`` geometrically spaced noise levels from ``sigma_max`` down to ``sigma_min``, then
    ``0`` (SMLD's levels, Song & Ermon 2019)."""
    if not (0 < sigma_min < sigma_max < math.inf) or int(steps) != steps or steps < 2:
        raise ValueError(
            f"need 0 < sigma_min < sigma_max and steps >= 2, got {sigma_min=}, {sigma_max=}, "
            f"{steps=}"
        )
    return custom_grid(np.geomspace(sigma_max, sigma_min, int(steps)))
