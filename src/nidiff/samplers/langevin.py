r"""Annealed Langevin dynamics as a step rule: NI-SMLD's sampler (GFF paper Sec. 3, App. E;
Song & Ermon, 2019, Alg. 1) on a variance-exploding schedule.

A step at noise level :math:`\sigma = t` of the grid is one Langevin update preconditioned by
:math:`\Sigma` (which leaves the noised data :math:`p_\sigma` stationary):

.. math:: x \leftarrow x + \alpha\,\Sigma\,\nabla\log p_\sigma(x) + \sqrt{2\alpha}\,\Sigma^{1/2}z
          = \underbrace{x - \tfrac{\alpha}{\sigma}\,\Sigma^{1/2}\hat\varepsilon}_{\text{mean}}
          + \sqrt{2\alpha}\,\Sigma^{1/2}z, \qquad
          \alpha = \epsilon\,\sigma^2/\sigma_{min}^2,

a Gaussian :class:`~.transition.Transition` with ``std`` :math:`\sqrt{2\alpha}` (so the driver
draws, records and replays its noise like any other stochastic step). Song & Ermon run
``n_steps`` updates at each of ``L`` geometric levels; here every grid time is its own level
and a ladder of ``N`` geometric levels (:func:`~nidiff.schedule.geometric_grid`, what
:func:`~nidiff.schedule.own_grid` gives a VE model) is annealed one update per level, the
continuous-annealing form of the same chain (the model is trained on every
:math:`\sigma \in [\sigma_{min}, \sigma_{max}]`, :mod:`nidiff.training.processes`). The step
that lands on ``t_prev = 0`` is the denoising step :math:`\hat x_0 = x - \sigma\Sigma^{1/2}
\hat\varepsilon = E[x_0 \mid x_\sigma]` (Tweedie; Song & Ermon's "denoise the last sample").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._checks import check_in_range
from ..models.prediction import Epsilon, Prediction
from ..noise.base import NoiseModel
from ..noise.isotropic import IsotropicNoise
from ..schedule.ve import VESchedule
from .rule import OneEvaluation, check_step, model_coefficients
from .transition import Transition

__all__ = ["DEFAULT_STEP_RATIO", "Langevin"]

#: :math:`\alpha/\sigma^2 = \epsilon/\sigma_{min}^2` of Song & Ermon's CIFAR-10 setting
#: (:math:`\epsilon = 2\cdot10^{-5}`, :math:`\sigma_{min} = 0.01`), the default step size.
DEFAULT_STEP_RATIO = 0.2


@dataclass(frozen=True)
class Langevin(OneEvaluation):
    r"""One preconditioned Langevin update per grid step (see the module).

    Args:
        schedule: a :class:`~nidiff.schedule.VESchedule` (its ``sigma_min`` is
            :math:`\sigma_{min}` of the step size).
        noise: the fixed-covariance noise :math:`\Sigma` (isotropic, GFF, diagonal).
        step_lr: :math:`\epsilon`; ``None``: :data:`DEFAULT_STEP_RATIO`
            :math:`\cdot\,\sigma_{min}^2`.
        prediction: what the network predicts (default white :math:`\hat\varepsilon`).
    """

    schedule: VESchedule
    noise: NoiseModel = field(default_factory=IsotropicNoise)
    step_lr: float | None = None
    prediction: Prediction = field(default_factory=Epsilon, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, VESchedule):
            raise ValueError(
                f"annealed Langevin needs a variance-exploding schedule (NI-SMLD), not "
                f"{self.schedule!r}"
            )
        if self.noise.data_conditioned:
            raise ValueError("annealed Langevin needs a fixed-covariance noise, not edge noise")
        if self.step_lr is not None:
            check_in_range(self.step_lr, "step_lr", 0.0, math.inf, low_open=True)

    @property
    def stochastic(self) -> bool:
        return True

    @property
    def epsilon(self) -> float:
        r""":math:`\epsilon` (``step_lr``, or the default ratio times :math:`\sigma_{min}^2`)."""
        if self.step_lr is not None:
            return float(self.step_lr)
        return DEFAULT_STEP_RATIO * self.schedule.sigma_min**2

    def transition(self, x_t: Tensor, out: Tensor, t: Tensor, t_prev: Tensor) -> Transition:
        """The update at level ``t`` (a scalar time: one level for the batch), or the denoising
        step when ``t_prev`` is ``0``."""
        tt, tp = check_step(self.schedule, x_t, out, t, t_prev)
        if tt.numel() != 1:
            raise ValueError("annealed Langevin takes one noise level per step, not a time map")
        c = model_coefficients(self.schedule, self.prediction, tt.to(x_t.device), x_t)
        x0_hat, eps_sigma = self.prediction.split(x_t, out, c, self.noise)
        if float(tp) == 0.0:
            zero = torch.zeros((), dtype=x_t.dtype, device=x_t.device)
            return Transition(x0_hat, zero, self.noise, x0_hat, out, deterministic=True)
        sigma = float(tt)
        alpha = self.epsilon * (sigma / self.schedule.sigma_min) ** 2
        mean = x_t - (alpha / sigma) * eps_sigma
        std = torch.tensor(math.sqrt(2 * alpha), dtype=x_t.dtype, device=x_t.device)
        return Transition(mean, std, self.noise, x0_hat, out, deterministic=False)
