r"""Euler-ancestral and Heun in the noise-level coordinates of k-diffusion and EDM.

Karras et al. (2022, EDM) and k-diffusion write any process in its variance-exploding form
:math:`\tilde x = x/\alpha_t` with noise level :math:`\tilde\sigma_t = \sigma_t/\alpha_t =
e^{-\ell_t/2}` (:math:`\ell` the log-SNR), where the probability-flow ODE is
:math:`d\tilde x/d\tilde\sigma = (\tilde x - \hat x_0)/\tilde\sigma = \hat\varepsilon_\Sigma`.
The rules below take and return the process's own :math:`x_t` (multiplying by
:math:`\alpha_s`), so they plug into any driver; they need :math:`\alpha_t > 0` (on rectified
flow, grids that start below ``t = 1``, or :class:`~.flow.FlowHeun`).

* :class:`EulerAncestral` (k-diffusion ``sample_euler_ancestral``, diffusers
  ``EulerAncestralDiscreteScheduler``): with
  :math:`\sigma_\uparrow = \eta\,\tilde\sigma_s\sqrt{1 - \tilde\sigma_s^2/\tilde\sigma_t^2}` and
  :math:`\sigma_\downarrow = \sqrt{\tilde\sigma_s^2 - \sigma_\uparrow^2}`,
  :math:`\tilde x_s = \hat x_0 + \sigma_\downarrow\hat\varepsilon_\Sigma +
  \sigma_\uparrow\Sigma^{1/2}z`. This is exactly the DDIM step with the same :math:`\eta`
  (tested), written in the EDM form.
* :class:`Heun` (EDM Alg. 1 without churn, diffusers ``HeunDiscreteScheduler``): an Euler step to
  :math:`\tilde\sigma_s`, a second model call there, and the average slope; the step that lands
  on clean data is plain Euler (one call), as in both references.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._checks import check_in_range
from ..models.prediction import Epsilon, Prediction
from ..noise.base import NoiseModel
from ..noise.isotropic import IsotropicNoise
from ..schedule.base import Schedule
from .rule import Evaluate, OneEvaluation, check_step, model_coefficients
from .transition import Transition, all_zero

__all__ = ["EulerAncestral", "Heun"]


@dataclass(frozen=True)
class _Karras:
    schedule: Schedule
    noise: NoiseModel = field(default_factory=IsotropicNoise)
    prediction: Prediction = field(default_factory=Epsilon)

    def __post_init__(self) -> None:
        if self.noise.data_conditioned:
            raise ValueError(
                f"{type(self).__name__} needs a fixed-covariance noise; the edge-preserving "
                "noise is sampled by its own posterior (EdgePosterior)"
            )

    def _split(self, x: Tensor, out: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        c = model_coefficients(self.schedule, self.prediction, t, x)
        return self.prediction.split(x, out, c, self.noise)

    def _levels(self, tt: Tensor, ts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""float64 :math:`(\alpha_s, \tilde\sigma_t, \tilde\sigma_s)`; refuses
        :math:`\alpha_t = 0`."""
        alpha_t, sigma_t = self.schedule.coefficients(tt)
        if bool((alpha_t == 0).any()):
            raise ValueError(
                f"{type(self).__name__} works in sigma/alpha and cannot start where alpha_t = 0 "
                "(rectified flow at t = 1): start the grid below, or use flow-heun/flow-euler"
            )
        alpha_s, sigma_s = self.schedule.coefficients(ts)
        return alpha_s, sigma_t / alpha_t, sigma_s / alpha_s


@dataclass(frozen=True)
class EulerAncestral(_Karras, OneEvaluation):
    r"""Euler-ancestral step with stochasticity ``eta`` in ``[0, 1]`` (module docs; ``1`` as in
    diffusers, ``0`` deterministic Euler = DDIM)."""

    eta: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_in_range(self.eta, "eta", 0.0, 1.0)

    @property
    def stochastic(self) -> bool:
        return self.eta > 0

    def transition(self, x_t: Tensor, out: Tensor, t: float | Tensor, t_prev: float | Tensor):
        """One step ``t -> t_prev`` from the model output ``out`` at ``(x_t, t)``."""
        tt, ts = check_step(self.schedule, x_t, out, t, t_prev)
        x0_hat, eps_sigma = self._split(x_t, out, tt)
        alpha_s, st, ss = self._levels(tt, ts)
        up = self.eta * ss * (-torch.expm1(2 * (torch.log(ss) - torch.log(st)))).clamp_min(0).sqrt()
        down = (ss * ss - up * up).clamp_min(0).sqrt()
        cast = {"dtype": x_t.dtype, "device": x_t.device}
        mean = alpha_s.to(**cast) * (x0_hat + down.to(**cast) * eps_sigma)
        std = (alpha_s * up).to(x_t.dtype)
        return Transition(
            mean=mean,
            std=std.to(x_t.device),
            noise=self.noise,
            x0_hat=x0_hat,
            eps_hat=out,
            deterministic=all_zero(std),
        )


@dataclass(frozen=True)
class Heun(_Karras):
    r"""Heun's second-order step on the EDM ODE (module docs); deterministic, two model calls per
    step except the last (to clean data)."""

    stochastic = False

    def step(
        self, evaluate: Evaluate, x_t: Tensor, t: Tensor, t_prev: Tensor, state: Any = None
    ) -> Transition:
        """Evaluate at ``(x_t, t)``, Euler to ``t_prev``, evaluate there, average the slopes."""
        out = evaluate(x_t, t)
        tt, ts = check_step(self.schedule, x_t, out, t, t_prev)
        x0_hat, d = self._split(x_t, out, tt)
        alpha_s, st, ss = self._levels(tt, ts)
        cast = {"dtype": x_t.dtype, "device": x_t.device}
        a_t = self.schedule.coefficients(tt)[0]
        x_tilde = x_t / a_t.to(**cast)
        dt = (ss - st).to(**cast)
        x_tilde_s = x_tilde + d * dt
        if not all_zero(ss):
            x_euler = alpha_s.to(**cast) * x_tilde_s
            out2 = evaluate(x_euler, t_prev)
            _, d2 = self._split(x_euler, out2, ts)
            x_tilde_s = x_tilde + 0.5 * (d + d2) * dt
        mean = alpha_s.to(**cast) * x_tilde_s
        zero = torch.zeros((), dtype=x_t.dtype, device=x_t.device)
        return Transition(mean, zero, self.noise, x0_hat, out, deterministic=True)
