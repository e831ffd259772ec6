r"""Training objectives for the three noise processes; each returns **per-element** losses.

* isotropic / GFF (NI-DDPM, GFF paper Sec. 3): :math:`x_t = \sqrt{\bar\alpha_t}x_0 +
  \sqrt{1-\bar\alpha_t}\,\Sigma^{1/2}\varepsilon`, loss :math:`\|\varepsilon_\theta(x_t,t) -
  \varepsilon\|^2`: the network predicts the **white** noise, :math:`\Sigma^{1/2}` is applied
  outside it (the :math:`\Sigma^{-1}`-weighted objective reduces to this).
* edge-preserving (EP eq. 11, 15): :math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sigma_t(x_0)\odot
  \varepsilon`, loss :math:`\|f_\theta(x_t,t) - \sigma_t\odot\varepsilon\|^2`.

Weighting and reduction belong to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from .._checks import expand_like
from ..models.contract import Denoiser
from ..noise import EdgePreservingNoise, NoiseModel
from ..schedule import Schedule

__all__ = ["EdgeLoss", "EpsilonLoss"]


class _RegressionLoss:
    """Shared ``__call__``: per-element squared error of the model against ``noisy``'s target."""

    def noisy(self, x0: Tensor, t: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def __call__(
        self, model: Denoiser, x0: Tensor, t: Tensor, eps: Tensor, cond: Any = None
    ) -> Tensor:
        x_t, target = self.noisy(x0, t, eps)
        return (model(x_t, t, cond) - target).square()


@dataclass(frozen=True)
class EpsilonLoss(_RegressionLoss):
    """White-ε regression for a fixed-covariance noise model (isotropic, diagonal, GFF)."""

    schedule: Schedule
    noise: NoiseModel

    def noisy(self, x0: Tensor, t: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_t, target)`` for white noise ``eps``; ``t`` scalar, ``(B,)`` or per element."""
        a, b = self.schedule.coefficients(t)
        a = expand_like(a.to(x0), x0)
        b = expand_like(b.to(x0), x0)
        return a * x0 + b * self.noise.color(eps), eps


@dataclass(frozen=True)
class EdgeLoss(_RegressionLoss):
    """EP eq. 15: regress the scaled non-isotropic noise :math:`\\sigma_t\\odot\\varepsilon`."""

    noise: EdgePreservingNoise

    def noisy(self, x0: Tensor, t: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        return self.noise.forward(x0, t, eps)
