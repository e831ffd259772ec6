r"""Euler and Heun on the probability-flow ODE in the schedule's own time: the flow-matching
samplers (diffusers' ``FlowMatchEulerDiscreteScheduler`` / ``FlowMatchHeunDiscreteScheduler``).

The ODE is :math:`dx/dt = u(x, t) = \dot\alpha_t\hat x_0 + \dot\sigma_t\hat\varepsilon_\Sigma`
(for rectified flow the predicted velocity :math:`\hat\varepsilon_\Sigma - \hat x_0` itself; for
the VP SDE the probability-flow ODE :math:`f x - \tfrac12 g^2\Sigma\nabla\log p` of Song et al.,
2021, and of NI-VP, GFF paper eq. 25):

* :class:`FlowEuler`: :math:`x_s = x_t + (s - t)\,u(x_t, t)`. On rectified flow this is exactly
  DDIM with :math:`\eta = 0`.
* :class:`FlowHeun`: :math:`\tilde x = x_t + (s - t)u_t`, :math:`x_s = x_t + (s - t)(u_t +
  u(\tilde x, s))/2`; the step to ``s = 0`` is Euler (one call), as in diffusers.

Both need a schedule with a time derivative (rectified flow, continuous VP, VE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._checks import as_time
from ..models.prediction import Epsilon, Prediction
from ..noise.base import NoiseModel
from ..noise.isotropic import IsotropicNoise
from ..schedule.base import Schedule
from .forward import coefficients_at
from .rule import Evaluate, OneEvaluation, check_step
from .transition import Transition

__all__ = ["FlowEuler", "FlowHeun"]


@dataclass(frozen=True)
class _FlowODE:
    schedule: Schedule
    noise: NoiseModel = field(default_factory=IsotropicNoise)
    prediction: Prediction = field(default_factory=Epsilon)

    stochastic = False

    def __post_init__(self) -> None:
        if not self.schedule.has_velocity:
            raise ValueError(
                f"{type(self).__name__} integrates dx/dt and needs a schedule with a time "
                f"derivative; {self.schedule!r} has none (use ddim, dpm++2m or heun)"
            )
        if self.noise.data_conditioned:
            raise ValueError(
                f"{type(self).__name__} needs a fixed-covariance noise; the edge-preserving "
                "noise is sampled by its own posterior (EdgePosterior)"
            )

    def _velocity(self, x: Tensor, out: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(u, x0_hat)`` at ``(x, t)``."""
        c = coefficients_at(self.schedule, t, x, velocity=True)
        x0_hat = self.prediction.split(x, out, c, self.noise)[0]
        return self.prediction.velocity(x, out, c, self.noise), x0_hat

    @staticmethod
    def _dt(tt: Tensor, ts: Tensor, x: Tensor) -> Tensor:
        return (ts - tt).to(dtype=x.dtype, device=x.device)

    @staticmethod
    def _done(x_t: Tensor, mean: Tensor, x0_hat: Tensor, out: Tensor, noise) -> Transition:
        zero = torch.zeros((), dtype=x_t.dtype, device=x_t.device)
        return Transition(mean, zero, noise, x0_hat, out, deterministic=True)


@dataclass(frozen=True)
class FlowEuler(_FlowODE, OneEvaluation):
    """Euler step :math:`x_s = x_t + (s - t)\\,u` (module docs)."""

    def transition(self, x_t: Tensor, out: Tensor, t: float | Tensor, t_prev: float | Tensor):
        """One step ``t -> t_prev`` from the model output ``out`` at ``(x_t, t)``."""
        tt, ts = check_step(self.schedule, x_t, out, t, t_prev)
        u, x0_hat = self._velocity(x_t, out, tt)
        return self._done(x_t, x_t + self._dt(tt, ts, x_t) * u, x0_hat, out, self.noise)


@dataclass(frozen=True)
class FlowHeun(_FlowODE):
    """Heun step (module docs): two model calls, one for the step that lands on ``t = 0``."""

    def step(
        self, evaluate: Evaluate, x_t: Tensor, t: Tensor, t_prev: Tensor, state: Any = None
    ) -> Transition:
        out = evaluate(x_t, t)
        tt, ts = check_step(self.schedule, x_t, out, t, t_prev)
        u, x0_hat = self._velocity(x_t, out, tt)
        dt = self._dt(tt, ts, x_t)
        x_next = x_t + dt * u
        if not bool((as_time(t_prev) == 0).all()):
            u2, _ = self._velocity(x_next, evaluate(x_next, t_prev), ts)
            x_next = x_t + dt * (0.5 * (u + u2))
        return self._done(x_t, x_next, x0_hat, out, self.noise)
