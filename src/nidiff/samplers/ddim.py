r"""DDIM and DDPM steps, isotropic and non-isotropic, as :class:`~.transition.Transition` rules.

One step from ``t`` to any earlier ``t_prev`` (DDIM eq. 12 of Song et al., 2021; the NI-DDIM and
NI-DDPM steps of Voleti et al., 2022, which colour every noise term with :math:`\Sigma^{1/2}`).
Writing :math:`\bar\alpha = \bar\alpha_t`, :math:`\bar\alpha' = \bar\alpha_{t_{prev}}` and
:math:`\varepsilon_\Sigma = \Sigma^{1/2}\hat\varepsilon` for the coloured model output:

.. math::
    \hat x_0 &= (x_t - \sqrt{1-\bar\alpha}\,\varepsilon_\Sigma)/\sqrt{\bar\alpha} \\
    \sigma^2 &= \eta^2\,\frac{1-\bar\alpha'}{1-\bar\alpha}
                \Bigl(1-\frac{\bar\alpha}{\bar\alpha'}\Bigr) \\
    x_{t_{prev}} &= \sqrt{\bar\alpha'}\,\hat x_0 + \sqrt{1-\bar\alpha'-\sigma^2}\,\varepsilon_\Sigma
                    + \sigma\,\Sigma^{1/2} z .

:math:`\eta = 0` is deterministic DDIM; :math:`\eta = 1` is the DDPM posterior
:math:`q(x_{t_{prev}} \mid x_t, \hat x_0) = \mathcal N(\tilde\mu, \tilde\beta\,\Sigma)` for any
``t_prev < t`` (and the ancestral step of Ho et al. eq. 11 when ``t_prev = t - 1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._checks import as_time, check_finite, check_in_range, expand_like
from ..noise.base import NoiseModel
from ..noise.isotropic import IsotropicNoise
from ..schedule.base import Schedule
from .transition import Transition, all_zero

__all__ = ["DDIM", "DDPM"]


@dataclass(frozen=True)
class DDIM:
    r"""The DDIM step with stochasticity :math:`\eta` and noise model :math:`\Sigma` (see module).

    Stateless: it holds no step counter and derives no previous time; the caller (usually
    :func:`~.loop.sample` over a :class:`~nidiff.schedule.TimeGrid`) gives both ``t`` and
    ``t_prev``.

    Args:
        schedule: the schedule giving :math:`\bar\alpha_t` (paper time, ``0`` = clean).
        noise: the noise model :math:`\Sigma` the network was trained with (white
            :math:`\hat\varepsilon` output, coloured here). Default isotropic.
        eta: :math:`\eta \in [0, 1]`; ``0`` deterministic DDIM, ``1`` DDPM.
        clip_x0: optional ``(low, high)`` range for :math:`\hat x_0` (pixel models trained on
            [−1, 1] data: ``(-1, 1)``, diffusers' ``clip_sample``). When it clips, the
            direction term uses the noise implied by the clipped estimate,
            :math:`\varepsilon_\Sigma = (x_t - \sqrt{\bar\alpha}\,\hat x_0)/\sqrt{1-\bar\alpha}`,
            so the step stays a function of :math:`(x_t, \hat x_0)` alone. Default: no clipping.
    """

    schedule: Schedule
    noise: NoiseModel = field(default_factory=IsotropicNoise)
    eta: float = 0.0
    clip_x0: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        check_in_range(self.eta, "eta", 0.0, 1.0)
        if self.clip_x0 is not None and not (
            len(self.clip_x0) == 2 and self.clip_x0[0] < self.clip_x0[1]
        ):
            raise ValueError(f"clip_x0={self.clip_x0} must be a (low, high) pair with low < high")

    def transition(
        self, x_t: Tensor, eps: Tensor, t: float | Tensor, t_prev: float | Tensor
    ) -> Transition:
        r"""The Gaussian step :math:`x_t \to x_{t_{prev}}`.

        Args:
            x_t: noisy data ``(B, *dims)``, any floating dtype (coefficients are cast to it).
            eps: the model's white :math:`\hat\varepsilon`, shape of ``x_t``.
            t: current time: scalar, ``(B,)`` or a per-element map broadcastable to ``x_t``.
            t_prev: target time, same shapes allowed, ``0 <= t_prev < t`` everywhere.

        Returns:
            ``Transition(mean, std, noise, x0_hat, eps_hat=eps, deterministic)``: ``mean`` and
            ``x0_hat`` of ``x_t``'s shape and dtype; ``std`` = :math:`\sigma` of shape ``()``,
            ``(B, 1, ..., 1)`` or the time map's, broadcastable to ``x_t``.

        Raises:
            ValueError: on shape mismatch, non-finite input (inside
                :func:`~nidiff._checks.deferred_finite_checks`, as in :func:`~.loop.sample`:
                when the block ends), times outside ``[0, t_max]`` or ``t_prev >= t``.
        """
        if eps.shape != x_t.shape:
            raise ValueError(f"eps of shape {tuple(eps.shape)} != x_t of shape {tuple(x_t.shape)}")
        if not x_t.is_floating_point():
            raise ValueError(f"x_t must be a floating tensor, got {x_t.dtype}")
        check_finite(x_t, "x_t")
        check_finite(eps, "eps")
        tt = self.schedule.check_time(expand_like(as_time(t), x_t, "t"), "t")
        tp = self.schedule.check_time(expand_like(as_time(t_prev), x_t, "t_prev"), "t_prev")
        if not bool((tp < tt.to(tp.device)).all()):
            raise ValueError(
                f"a step must go back in time (t_prev < t); got t={_show(tt)}, t_prev={_show(tp)}"
            )
        coefs = [v.to(x_t.dtype) for v in _step_coefficients(self.schedule, tt, tp, self.eta)]
        # σ is read where the times live (the CPU for grid times), already rounded to x_t's
        # dtype: exactly whether the step is deterministic, without waiting for the device.
        deterministic = all_zero(coefs[-1])
        a, b, a_prev, dir_coef, sigma = (v.to(x_t.device) for v in coefs)
        eps_sigma = self.noise.color(eps)
        x0_hat = (x_t - b * eps_sigma) / a
        if self.clip_x0 is not None:
            x0_hat = x0_hat.clamp(*self.clip_x0)
            eps_sigma = (x_t - a * x0_hat) / b
        mean = a_prev * x0_hat + dir_coef * eps_sigma
        return Transition(mean, sigma, self.noise, x0_hat, eps_hat=eps, deterministic=deterministic)


@dataclass(frozen=True)
class DDPM(DDIM):
    r"""The (NI-)DDPM step: :class:`DDIM` with :math:`\eta = 1` (not settable).

    For every ``t_prev < t`` the step is the forward-process posterior evaluated at
    :math:`\hat x_0`, with :math:`\gamma^2 = \bar\alpha_t/\bar\alpha_{t_{prev}}`:

    .. math::
        \tilde\mu = \frac{\sqrt{\bar\alpha_{t_{prev}}}(1-\gamma^2)}{1-\bar\alpha_t}\hat x_0
                  + \frac{\gamma(1-\bar\alpha_{t_{prev}})}{1-\bar\alpha_t}x_t, \qquad
        \tilde\beta = \frac{1-\bar\alpha_{t_{prev}}}{1-\bar\alpha_t}(1-\gamma^2),

    with covariance :math:`\tilde\beta\,\Sigma` (NI-DDPM). For ``t_prev = t - 1`` this is Ho et
    al.'s ancestral step
    :math:`x_{t-1} = (x_t - \beta_t/\sqrt{1-\bar\alpha_t}\,\Sigma^{1/2}\hat\varepsilon)
    /\sqrt{\alpha_t} + \sqrt{\tilde\beta_t}\,\Sigma^{1/2}z`.

    Args:
        schedule: the schedule.
        noise: the noise model :math:`\Sigma`. Default isotropic.
    """

    eta: float = field(default=1.0, init=False)


def _step_coefficients(
    schedule: Schedule, t: Tensor, t_prev: Tensor, eta: float
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    r"""float64 :math:`(\sqrt{\bar\alpha}, \sqrt{1-\bar\alpha}, \sqrt{\bar\alpha'},
    \sqrt{1-\bar\alpha'-\sigma^2}, \sigma)`, formed from :math:`\log\bar\alpha` (``expm1``
    keeps :math:`1-\bar\alpha` and :math:`1-\bar\alpha/\bar\alpha'` accurate near 0)."""
    log_ab = schedule.log_alpha_bar(t)
    log_ab_prev = schedule.log_alpha_bar(t_prev).to(log_ab.device)
    one_minus, one_minus_prev = -torch.expm1(log_ab), -torch.expm1(log_ab_prev)
    var = eta**2 * one_minus_prev / one_minus * (-torch.expm1(log_ab - log_ab_prev))
    # 1 − ᾱ' − σ² ≥ 0 exactly (η ≤ 1); the clamp only absorbs rounding.
    dir_coef = (one_minus_prev - var).clamp_min(0).sqrt()
    a, b, a_prev = (0.5 * log_ab).exp(), one_minus.clamp_min(0).sqrt(), (0.5 * log_ab_prev).exp()
    return a, b, a_prev, dir_coef, var.sqrt()


def _show(v: Tensor) -> str:
    return f"{float(v):g}" if v.numel() == 1 else f"<{tuple(v.shape)} map>"
