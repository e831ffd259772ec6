r"""DDIM and DDPM steps, isotropic and non-isotropic, on any (α, σ) schedule.

One step from ``t`` to any earlier ``t_prev = s`` (DDIM eq. 12 of Song et al., 2021; the NI-DDIM
and NI-DDPM steps of Voleti et al., 2022, which colour every noise term with :math:`\Sigma^{1/2}`).
With :math:`(\hat x_0, \varepsilon_\Sigma)` from the model output (any
:class:`~nidiff.models.prediction.Prediction`; for white :math:`\hat\varepsilon`,
:math:`\varepsilon_\Sigma = \Sigma^{1/2}\hat\varepsilon` and
:math:`\hat x_0 = (x_t - \sigma_t\varepsilon_\Sigma)/\alpha_t`) and
:math:`\sigma^2_{t|s} = \sigma_t^2 - (\alpha_t/\alpha_s)^2\sigma_s^2`:

.. math::
    s^2 &= \eta^2\,\frac{\sigma_s^2}{\sigma_t^2}\,\sigma^2_{t|s} \\
    x_s &= \alpha_s\hat x_0 + \sqrt{\sigma_s^2 - s^2}\,\varepsilon_\Sigma + s\,\Sigma^{1/2} z .

On variance-preserving schedules these are the familiar
:math:`s^2 = \eta^2\frac{1-\bar\alpha_s}{1-\bar\alpha_t}(1-\bar\alpha_t/\bar\alpha_s)` and
:math:`x_s = \sqrt{\bar\alpha_s}\hat x_0 + \sqrt{1-\bar\alpha_s-s^2}\,\varepsilon_\Sigma + \dots`.
:math:`\eta = 0` is deterministic DDIM (on rectified flow: the flow Euler step); :math:`\eta = 1`
is the posterior :math:`q(x_s \mid x_t, \hat x_0) = \mathcal N(\tilde\mu, \tilde\beta\,\Sigma)` for
any ``s < t`` (Ho et al.'s ancestral step when ``s = t - 1``; on rectified flow, the stochastic
flow sampler: a DDPM posterior in flow coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from .._checks import check_in_range
from ..models.prediction import Coefficients, Epsilon, Prediction
from ..noise.base import NoiseModel
from ..noise.isotropic import IsotropicNoise
from ..schedule.base import Schedule
from .rule import OneEvaluation, check_step
from .transition import Transition, all_zero

__all__ = ["DDIM", "DDPM"]


@dataclass(frozen=True)
class DDIM(OneEvaluation):
    r"""The DDIM step with stochasticity :math:`\eta` and noise model :math:`\Sigma` (see module).

    Stateless: it holds no step counter and derives no previous time; the caller (usually
    :func:`~.loop.sample` over a :class:`~nidiff.schedule.TimeGrid`) gives both ``t`` and
    ``t_prev``.

    Args:
        schedule: the schedule giving :math:`(\alpha_t, \sigma_t)` (paper time, ``0`` = clean).
        noise: the noise model :math:`\Sigma` the network was trained with (a fixed one: the
            data-conditioned edge-preserving noise has its own posterior). Default isotropic.
        eta: :math:`\eta \in [0, 1]`; ``0`` deterministic DDIM, ``1`` DDPM.
        clip_x0: optional ``(low, high)`` range for :math:`\hat x_0` (pixel models trained on
            [−1, 1] data: ``(-1, 1)``, diffusers' ``clip_sample``). When it clips, the
            direction term uses the noise implied by the clipped estimate,
            :math:`\varepsilon_\Sigma = (x_t - \alpha_t\hat x_0)/\sigma_t`, so the step stays a
            function of :math:`(x_t, \hat x_0)` alone. Default: no clipping.
        prediction: what the network predicts (default white :math:`\hat\varepsilon`).
        linear_eta: scale the posterior variance by :math:`\eta` instead of :math:`\eta^2`
            (:math:`s^2 = \eta\,\tilde\beta`), as the edit-friendly authors' code does; the two
            agree at :math:`\eta \in \{0, 1\}`. Default ``False`` (DDIM eq. 16).
    """

    schedule: Schedule
    noise: NoiseModel = field(default_factory=IsotropicNoise)
    eta: float = 0.0
    clip_x0: tuple[float, float] | None = None
    prediction: Prediction = field(default_factory=Epsilon, kw_only=True)
    linear_eta: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        check_in_range(self.eta, "eta", 0.0, 1.0)
        if self.noise.data_conditioned:
            raise ValueError(
                f"{type(self).__name__} needs a fixed-covariance noise (isotropic, diagonal, GFF): "
                "the data-conditioned edge-preserving noise is sampled by its own posterior "
                "(EdgePosterior, EP eq. 12-14)"
            )
        if self.clip_x0 is not None and not (
            len(self.clip_x0) == 2 and self.clip_x0[0] < self.clip_x0[1]
        ):
            raise ValueError(f"clip_x0={self.clip_x0} must be a (low, high) pair with low < high")

    @property
    def stochastic(self) -> bool:
        r"""Whether steps that do not land on clean data draw noise (:math:`\eta > 0`)."""
        return self.eta > 0

    def transition(
        self, x_t: Tensor, eps: Tensor, t: float | Tensor, t_prev: float | Tensor
    ) -> Transition:
        r"""The Gaussian step :math:`x_t \to x_{t_{prev}}`.

        Args:
            x_t: noisy data ``(B, *dims)``, any floating dtype (coefficients are cast to it).
            eps: the model output (white :math:`\hat\varepsilon` by default; see
                ``prediction``), shape of ``x_t``.
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
        tt, tp = check_step(self.schedule, x_t, eps, t, t_prev, "eps")
        eta = self.eta**0.5 if self.linear_eta else self.eta
        coefs = [v.to(x_t.dtype) for v in _step_coefficients(self.schedule, tt, tp, eta)]
        # σ is read where the times live (the CPU for grid times), already rounded to x_t's
        # dtype: exactly whether the step is deterministic, without waiting for the device.
        deterministic = all_zero(coefs[-1])
        a, b, a_prev, dir_coef, sigma = (v.to(x_t.device) for v in coefs)
        c = Coefficients(a, b)
        if self.prediction.needs_velocity:
            c = Coefficients(a, b, *(v.to(x_t) for v in self.schedule.velocity_coefficients(tt)))
        x0_hat, eps_sigma = self.prediction.split(x_t, eps, c, self.noise)
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
    r"""float64 :math:`(\alpha_t, \sigma_t, \alpha_s, \sqrt{\sigma_s^2 - s^2}, s)` (module
    docs), with :math:`\sigma^2` and :math:`\sigma^2_{t|s}` as the schedule forms them (on VP
    schedules from :math:`\log\bar\alpha` with ``expm1``, accurate near ``t = 0``)."""
    a, b = schedule.coefficients(t)
    a_prev = schedule.coefficients(t_prev)[0].to(a.device)
    var_t, var_prev = schedule.sigma2(t), schedule.sigma2(t_prev).to(a.device)
    var = eta**2 * var_prev / var_t * schedule.transition_var(t, t_prev)
    # σ_s² − s² ≥ 0 exactly (η ≤ 1); the clamp only absorbs rounding.
    dir_coef = (var_prev - var).clamp_min(0).sqrt()
    return a, b, a_prev, dir_coef, var.sqrt()
