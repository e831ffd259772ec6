r"""The continuous linear VP schedule (Song et al., 2021), NGDM's setting.

:math:`\beta(t) = \beta_{\min} + t(\beta_{\max}-\beta_{\min})` on ``t ∈ [0, 1]``, so
:math:`\log\bar\alpha(t) = -\int_0^t\beta
= -(\beta_{\min}t + \tfrac12(\beta_{\max}-\beta_{\min})t^2)`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .alpha_bar import AlphaBarSchedule

__all__ = ["VPSchedule"]


class VPSchedule(AlphaBarSchedule):
    r"""Linear VP SDE schedule, :math:`\beta_{\min} = 0.1`, :math:`\beta_{\max} = 20` by default."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not (0 < beta_min < beta_max < float("inf")):
            raise ValueError(f"need 0 < beta_min < beta_max, got {beta_min=}, {beta_max=}")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        self.t_max = 1.0

    def beta(self, t: float | Tensor) -> Tensor:
        r""":math:`\beta(t)`, elementwise."""
        return self.beta_min + self.check_time(t) * (self.beta_max - self.beta_min)

    def velocity_coefficients(self, t: float | Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`\dot\alpha = -\tfrac12\beta\alpha`,
        :math:`\dot\sigma = \tfrac12\beta\bar\alpha/\sigma` (infinite at ``t = 0``)."""
        beta = self.beta(t)
        alpha, sigma = self.coefficients(t)
        return -0.5 * beta * alpha, 0.5 * beta * alpha * alpha / sigma

    def drift_diffusion(self, t: float | Tensor) -> tuple[Tensor, Tensor]:
        r"""The VP SDE (NGDM eq. 2): :math:`f = -\tfrac12\beta(t)`, :math:`g^2 = \beta(t)`."""
        beta = self.beta(t)
        return -0.5 * beta, beta

    def _log_alpha_bar(self, t: Tensor) -> Tensor:
        return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t)

    def _time_of_log_alpha_bar(self, log_ab: Tensor) -> Tensor:
        # Solve ½Δt² + β_min t + log ᾱ = 0 for t ≥ 0, Δ = β_max − β_min.
        d = self.beta_max - self.beta_min
        disc = self.beta_min**2 - 2 * d * log_ab
        return (disc.sqrt() - self.beta_min) / d

    def rectified_time(self, t: float | Tensor, lam: float | Tensor) -> Tensor:
        r"""NGDM eq. 8, the closed form of :math:`\bar\alpha(\tau) = \bar\alpha(t)^\lambda`:

        .. math::
            \tau = \frac{-\beta_{\min} + \sqrt{\beta_{\min}^2 + 2(\beta_{\max}-\beta_{\min})
            \beta_{\min} t\lambda + (\beta_{\max}-\beta_{\min})^2 t^2 \lambda}}
            {\beta_{\max}-\beta_{\min}}
        """
        t_t, lam_t = self._rectify_inputs(t, lam)
        bmin, d = self.beta_min, self.beta_max - self.beta_min
        root = torch.sqrt(bmin**2 + 2 * d * bmin * t_t * lam_t + d**2 * t_t**2 * lam_t)
        return self._exact_ends((root - bmin) / d, t_t, lam_t)

    def to_spec(self) -> dict:
        return {"kind": "vp", "beta_min": self.beta_min, "beta_max": self.beta_max}

    def __repr__(self) -> str:
        return f"VPSchedule(beta_min={self.beta_min}, beta_max={self.beta_max})"
