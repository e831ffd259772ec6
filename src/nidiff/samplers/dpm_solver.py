r"""DPM-Solver++(2M) and its SDE variant (Lu et al., 2022, *DPM-Solver++*, Alg. 2; the SDE form is
the solver of LEDITS++, Brack et al., 2024), on any (α, σ) schedule and noise :math:`\Sigma`.

With the half log-SNR :math:`\lambda_t = \log(\alpha_t/\sigma_t)`, :math:`h = \lambda_s -
\lambda_t > 0` for a step ``t -> s`` and the data prediction :math:`D` (below):

.. math::
    \text{ODE:}\quad x_s &= \frac{\sigma_s}{\sigma_t}x_t - \alpha_s(e^{-h} - 1)\,D \\
    \text{SDE:}\quad x_s &= \frac{\sigma_s}{\sigma_t}e^{-h}x_t + \alpha_s(1 - e^{-2h})\,D
                          + \sigma_s\sqrt{1 - e^{-2h}}\;\Sigma^{1/2}z .

First order, :math:`D = \hat x_0(x_t)`. Second order ("2M", midpoint form as diffusers'
``solver_type="midpoint"``), with the previous step's estimate :math:`\hat x_0'` at
:math:`\lambda'`: :math:`r = (\lambda_t - \lambda')/h`,
:math:`D = \hat x_0 + \tfrac{1}{2r}(\hat x_0 - \hat x_0')`.

**History** lives in :attr:`Transition.state <nidiff.samplers.Transition>` as a
:class:`DPMState` :math:`(\lambda_t, \hat x_0)`, so the driver decides what each step remembers
(and :meth:`DPMState.forget` drops it per element where the driver replaced the state):
the first step of a chain (``state=None``) is first order, and, as diffusers does with
``lower_order_final`` and ``final_sigmas_type="zero"``, so is a step that lands on clean data
(:math:`\sigma_s = 0`, where both forms give :math:`x_s = \hat x_0`). Every step of the SDE form
is a Gaussian with explicit mean and std, so edit-friendly inversion records its noise exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..models.prediction import Epsilon, Prediction
from ..noise.base import NoiseModel
from ..noise.isotropic import IsotropicNoise
from ..schedule.base import Schedule
from .rule import Evaluate, check_step, model_coefficients
from .transition import Transition, all_zero

__all__ = ["DPMSolverPP", "DPMState", "SDEDPMSolverPP"]


@dataclass(frozen=True, eq=False)
class DPMState:
    r"""The previous step's half log-SNR :math:`\lambda'` (float64, the time's shape) and data
    estimate :math:`\hat x_0'` (``x``'s shape); ``valid`` (boolean, broadcastable to ``x``)
    marks where that history belongs to the chain (``None``: everywhere). Where it does not, the
    next step is first order."""

    lam: Tensor
    x0_hat: Tensor
    valid: Tensor | None = None

    def forget(self, where: Tensor) -> DPMState:
        """This history with the elements ``where`` forgotten (a driver replaced them: NGDM's
        pixels that have not started, whose estimates came from the source path)."""
        keep = ~where.to(device=self.x0_hat.device, dtype=torch.bool)
        valid = keep if self.valid is None else self.valid & keep
        return DPMState(self.lam, self.x0_hat, valid)


@dataclass(frozen=True)
class _DPMSolverPP:
    """Shared body of :class:`DPMSolverPP` and :class:`SDEDPMSolverPP` (see module docs)."""

    schedule: Schedule
    noise: NoiseModel = field(default_factory=IsotropicNoise)
    prediction: Prediction = field(default_factory=Epsilon)
    order: int = 2

    sde: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.order not in (1, 2):
            raise ValueError(f"order={self.order!r} must be 1 or 2 (DPM-Solver++(2M))")
        if self.noise.data_conditioned:
            raise ValueError(
                f"{type(self).__name__} needs a fixed-covariance noise; the edge-preserving "
                "noise is sampled by its own posterior (EdgePosterior)"
            )

    @property
    def stochastic(self) -> bool:
        return self.sde

    def step(
        self, evaluate: Evaluate, x_t: Tensor, t: Tensor, t_prev: Tensor, state: Any = None
    ) -> Transition:
        return self.transition(x_t, evaluate(x_t, t), t, t_prev, state)

    def transition(
        self,
        x_t: Tensor,
        out: Tensor,
        t: float | Tensor,
        t_prev: float | Tensor,
        state: DPMState | None = None,
    ) -> Transition:
        """One step ``t -> t_prev`` from the model output ``out`` at ``(x_t, t)``; ``state`` is
        the previous step's :attr:`Transition.state` (``None``: first order)."""
        tt, ts = check_step(self.schedule, x_t, out, t, t_prev)
        if state is not None and not isinstance(state, DPMState):
            raise ValueError(f"{type(self).__name__} got a foreign state {type(state).__name__}")
        x0_hat, _ = self.prediction.split(
            x_t, out, model_coefficients(self.schedule, self.prediction, tt, x_t), self.noise
        )
        sigma_t = self.schedule.coefficients(tt)[1]
        alpha_s, sigma_s = self.schedule.coefficients(ts)
        lam_t = 0.5 * self.schedule.log_snr(tt)
        h = 0.5 * self.schedule.log_snr(ts) - lam_t  # +inf where sigma_s = 0
        final = all_zero(sigma_s)
        D = x0_hat
        if state is not None and self.order == 2 and not final:
            r = ((lam_t - state.lam.to(lam_t.device)) / h).to(x_t)
            D = x0_hat + (x0_hat - state.x0_hat) / (2 * r)
            if state.valid is not None:
                D = torch.where(state.valid, D, x0_hat)
        cast = {"dtype": x_t.dtype, "device": x_t.device}
        if self.sde:
            keep = sigma_s / sigma_t * torch.exp(-h)
            mean = keep.to(**cast) * x_t + (alpha_s * -torch.expm1(-2 * h)).to(**cast) * D
            std64 = sigma_s * (-torch.expm1(-2 * h)).sqrt()
        else:
            keep = sigma_s / sigma_t
            mean = keep.to(**cast) * x_t - (alpha_s * torch.expm1(-h)).to(**cast) * D
            std64 = torch.zeros_like(sigma_s)
        std = std64.to(x_t.dtype)
        return Transition(
            mean=mean,
            std=std.to(x_t.device),
            noise=self.noise,
            x0_hat=x0_hat,
            eps_hat=out,
            deterministic=all_zero(std),
            state=DPMState(lam_t, x0_hat),
        )


@dataclass(frozen=True)
class DPMSolverPP(_DPMSolverPP):
    """DPM-Solver++(2M), deterministic (diffusers' ``DPMSolverMultistepScheduler`` with
    ``algorithm_type="dpmsolver++"``, ``solver_order=2``); ``order=1`` is DDIM."""

    sde: ClassVar[bool] = False


@dataclass(frozen=True)
class SDEDPMSolverPP(_DPMSolverPP):
    """SDE-DPM-Solver++(2M), stochastic (``algorithm_type="sde-dpmsolver++"``); LEDITS++'s
    solver for edit-friendly inversion. ``order=1`` is the DDPM posterior in λ form."""

    sde: ClassVar[bool] = True
