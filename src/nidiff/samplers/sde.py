r"""Euler–Maruyama on the reverse-time SDE (Anderson, 1982; Song et al., 2021), with structured
noise: NGDM eq. 3 for the VP SDE, GFF paper eq. 24 for NI-VP.

For a forward SDE :math:`dx = f(t)x\,dt + g(t)\Sigma^{1/2}dw` (:meth:`Schedule.drift_diffusion
<nidiff.schedule.Schedule.drift_diffusion>`) the reverse SDE is

.. math:: dx = \bigl[f x - g^2\,\Sigma\nabla_x\log p_t(x)\bigr]dt + g\,\Sigma^{1/2}d\bar w,
          \qquad \Sigma\nabla_x\log p_t = -\hat\varepsilon_\Sigma/\sigma_t ,

and one Euler–Maruyama step from ``t`` to ``s < t`` is the Gaussian

.. math:: x_s = x_t - \bigl[f x_t + g^2\hat\varepsilon_\Sigma/\sigma_t\bigr](t - s)
               + g\sqrt{t - s}\;\Sigma^{1/2}z ,

with :math:`f, g` at ``t``. With ``denoise_final`` (default), the step that lands on ``s = 0``
returns Tweedie's :math:`\hat x_0` instead (no noise), as Song et al.'s samplers do. Every other
step is stochastic with an explicit mean and std, so edit-friendly inversion records its noise;
run with NGDM's per-pixel start times it is NGDM's rectified reverse SDE (eq. 10).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..models.prediction import Epsilon, Prediction
from ..noise.base import NoiseModel
from ..noise.isotropic import IsotropicNoise
from ..schedule.base import Schedule
from .rule import OneEvaluation, check_step, model_coefficients
from .transition import Transition, all_zero

__all__ = ["EulerMaruyama"]


@dataclass(frozen=True)
class EulerMaruyama(OneEvaluation):
    """Euler–Maruyama step of the reverse SDE (module docs)."""

    schedule: Schedule
    noise: NoiseModel = field(default_factory=IsotropicNoise)
    prediction: Prediction = field(default_factory=Epsilon)
    denoise_final: bool = True

    stochastic = True

    def __post_init__(self) -> None:
        if not self.schedule.has_velocity:
            raise ValueError(
                f"the reverse SDE needs a continuous schedule (its drift and diffusion are time "
                f"derivatives); {self.schedule!r} has none (use ddpm or dpm++2m-sde)"
            )
        if self.noise.data_conditioned:
            raise ValueError(
                "the reverse SDE needs a fixed-covariance noise; the edge-preserving noise is "
                "sampled by its own posterior (EdgePosterior)"
            )

    def transition(self, x_t: Tensor, out: Tensor, t: float | Tensor, t_prev: float | Tensor):
        """One step ``t -> t_prev`` from the model output ``out`` at ``(x_t, t)``."""
        tt, ts = check_step(self.schedule, x_t, out, t, t_prev)
        c = model_coefficients(self.schedule, self.prediction, tt, x_t)
        x0_hat, eps_sigma = self.prediction.split(x_t, out, c, self.noise)
        f, g2 = self.schedule.drift_diffusion(tt)
        if not bool(torch.isfinite(f).all() & torch.isfinite(g2).all()):
            raise ValueError(
                f"the reverse SDE of {self.schedule!r} is singular at t={float(tt.max()):g} "
                "(rectified flow at t = 1): start the grid below"
            )
        cast = {"dtype": x_t.dtype, "device": x_t.device}
        if self.denoise_final and all_zero(ts):
            zero = torch.zeros((), **cast)
            return Transition(x0_hat, zero, self.noise, x0_hat, out, deterministic=True)
        h = tt - ts
        sigma_t = self.schedule.coefficients(tt)[1]
        mean = x_t - (h * f).to(**cast) * x_t - (h * g2 / sigma_t).to(**cast) * eps_sigma
        std = (g2 * h).sqrt().to(x_t.dtype)
        return Transition(mean, std.to(x_t.device), self.noise, x0_hat, out, deterministic=False)
