r"""The noise schedule: :math:`t \mapsto (\alpha_t, \sigma_t)` for any Gaussian diffusion.

Every process in nidiff writes its forward marginal as

.. math:: x_t = \alpha_t\,x_0 + \sigma_t\,\Sigma^{1/2}\varepsilon, \qquad
          \varepsilon \sim \mathcal N(0, I),

with time running from ``0`` (clean data, :math:`\alpha_0 = 1, \sigma_0 = 0`) to ``t_max``:

* variance preserving (:class:`~.alpha_bar.AlphaBarSchedule`: discrete DDPM tables and the
  continuous VP SDE), :math:`\alpha_t = \sqrt{\bar\alpha_t}`,
  :math:`\sigma_t = \sqrt{1-\bar\alpha_t}`;
* rectified flow (:class:`~.flow.RectifiedFlow`), :math:`\alpha_t = 1 - t`, :math:`\sigma_t = t`;
* variance exploding (:class:`~.ve.VESchedule`), :math:`\alpha_t = 1`, :math:`\sigma_t = t`.

Two processes with the same signal-to-noise ratio
:math:`\mathrm{SNR}_t = \alpha_t^2/\sigma_t^2` differ only by the scale
:math:`\sqrt{\alpha_t^2+\sigma_t^2}` of :math:`x_t` (Kingma et al., 2021), so every schedule
also has a *VP-equivalent* :math:`\bar\alpha_t = \mathrm{SNR}_t/(1+\mathrm{SNR}_t)`
(:meth:`Schedule.log_alpha_bar`): the :math:`\bar\alpha` of the variance-preserving process
:math:`x_t/\sqrt{\alpha_t^2+\sigma_t^2}`. NGDM's per-pixel rule is stated on it
(:meth:`Schedule.rectified_time`). Schedules compute in float64; times may be a scalar,
``(B,)`` or a per-element map.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from .._checks import as_time, broadcast_shape, check_in_range

__all__ = ["Schedule"]


class Schedule(ABC):
    r"""A map :math:`t \mapsto (\alpha_t, \sigma_t)` on ``[0, t_max]`` with strictly decreasing
    log-SNR :math:`\ell_t = 2\log(\alpha_t/\sigma_t)` (:math:`+\infty` at ``t = 0``).

    Subclasses implement :meth:`_log_coefficients` (:math:`\log\alpha_t, \log\sigma_t`) and
    :meth:`_time_of_log_snr`; optionally :meth:`velocity_coefficients` (time derivatives, for
    velocity models and the continuous-time samplers). Everything else follows.

    Attributes:
        t_max: the largest valid time (the noisiest training time).
        prior_std: the std of :math:`x_{t_{max}}` per unit of :math:`\Sigma^{1/2}`, used to draw
            the prior (``1`` for VP, where :math:`\sigma_{t_{max}} \approx 1`, and flow; the
            largest :math:`\sigma` for VE).
    """

    t_max: float
    prior_std: float = 1.0

    @abstractmethod
    def _log_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`(\log\alpha_t, \log\sigma_t)` for float64 ``t`` already checked to be in range
        (``-inf`` where a coefficient is 0)."""

    @abstractmethod
    def _time_of_log_snr(self, log_snr: Tensor) -> Tensor:
        r"""Inverse of :math:`t \mapsto \ell_t` for float64 values (``±inf`` allowed)."""

    # ------------------------------------------------------------------ public, checked API
    def check_time(self, t: float | Tensor, name: str = "t") -> Tensor:
        """Return ``t`` as float64, raising ``ValueError`` if it leaves ``[0, t_max]``."""
        tt = as_time(t)
        check_in_range(tt, name, 0.0, self.t_max)
        return tt

    def coefficients(self, t: float | Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`(\alpha_t, \sigma_t)` in float64, elementwise."""
        log_a, log_s = self._log_coefficients(self.check_time(t))
        return log_a.exp(), log_s.exp()

    def alpha(self, t: float | Tensor) -> Tensor:
        r""":math:`\alpha_t`, the signal coefficient."""
        return self.coefficients(t)[0]

    def sigma(self, t: float | Tensor) -> Tensor:
        r""":math:`\sigma_t`, the noise coefficient."""
        return self.coefficients(t)[1]

    def sigma2(self, t: float | Tensor) -> Tensor:
        r""":math:`\sigma_t^2` in float64."""
        return (2 * self._log_coefficients(self.check_time(t))[1]).exp()

    def log_snr(self, t: float | Tensor) -> Tensor:
        r""":math:`\ell_t = \log(\alpha_t^2/\sigma_t^2)` (``+inf`` at ``t = 0``)."""
        log_a, log_s = self._log_coefficients(self.check_time(t))
        return 2 * (log_a - log_s)

    def time_of_log_snr(self, log_snr: float | Tensor) -> Tensor:
        r"""The time with :math:`\ell_t = ` ``log_snr`` (clamped into ``[0, t_max]``)."""
        lam = as_time(log_snr, name="log_snr")
        if bool(torch.isnan(lam).any()):
            raise ValueError("log_snr contains NaN")
        return self._time_of_log_snr(lam).clamp(0.0, self.t_max)

    def transition_var(self, t: float | Tensor, s: float | Tensor) -> Tensor:
        r""":math:`\sigma^2_{t|s} = \sigma_t^2 - (\alpha_t/\alpha_s)^2\sigma_s^2`, the variance of
        :math:`q(x_t \mid x_s)` per unit :math:`\Sigma`, for ``s <= t`` (float64)
        :math:`= \sigma_t^2\,(1 - e^{\ell_t - \ell_s})`."""
        lt, ls = self.log_snr(t), self.log_snr(s)
        return self.sigma2(t) * -torch.expm1(lt - ls.to(lt.device))

    def log_alpha_bar(self, t: float | Tensor) -> Tensor:
        r"""The VP-equivalent :math:`\log\bar\alpha_t = -\log(1 + e^{-\ell_t})` (module docs;
        the schedule's own :math:`\bar\alpha` for variance-preserving schedules)."""
        return -torch.nn.functional.softplus(-self.log_snr(t))

    def alpha_bar(self, t: float | Tensor) -> Tensor:
        r""":math:`\bar\alpha(t)` in float64, elementwise (VP-equivalent, see
        :meth:`log_alpha_bar`)."""
        return self.log_alpha_bar(t).exp()

    def time_of_alpha_bar(self, alpha_bar: float | Tensor) -> Tensor:
        r"""The time :math:`t` with :math:`\bar\alpha(t) = ` ``alpha_bar`` (elementwise inverse)."""
        ab = as_time(alpha_bar, name="alpha_bar")
        check_in_range(ab, "alpha_bar", float(self.alpha_bar(self.t_max)), 1.0)
        return self.time_of_log_snr(ab.log() - torch.log1p(-ab))

    def to_spec(self) -> dict:
        """The JSON description of this schedule (:mod:`nidiff.spec` rebuilds it)."""
        raise ValueError(f"{type(self).__name__} cannot be serialised")

    def velocity_coefficients(self, t: float | Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`(\dot\alpha_t, \dot\sigma_t)`, the time derivatives, so that the velocity of
        the path is :math:`\dot x_t = \dot\alpha_t x_0 + \dot\sigma_t\Sigma^{1/2}\varepsilon`.

        Raises:
            ValueError: for schedules without a time derivative (a discrete DDPM table).
        """
        raise ValueError(
            f"{type(self).__name__} has no time derivative; velocity models and the "
            "continuous-time samplers need a continuous schedule (VPSchedule, RectifiedFlow, "
            "VESchedule)"
        )

    @property
    def has_velocity(self) -> bool:
        """Whether :meth:`velocity_coefficients` is defined (a continuous schedule)."""
        return type(self).velocity_coefficients is not Schedule.velocity_coefficients

    def drift_diffusion(self, t: float | Tensor) -> tuple[Tensor, Tensor]:
        r"""The forward SDE :math:`dx = f(t)\,x\,dt + g(t)\,\Sigma^{1/2}dw` with this marginal:
        :math:`f = \dot\alpha/\alpha`, :math:`g^2 = 2\sigma\dot\sigma - 2f\sigma^2`
        (:math:`= \beta(t)` and :math:`f = -\beta/2` for the VP SDE, NGDM eq. 2). Float64."""
        alpha, sigma = self.coefficients(t)
        d_alpha, d_sigma = self.velocity_coefficients(t)
        f = d_alpha / alpha
        return f, 2 * sigma * d_sigma - 2 * f * sigma * sigma

    # ------------------------------------------------------------------ NGDM
    def rectified_time(self, t: float | Tensor, lam: float | Tensor) -> Tensor:
        r"""NGDM rectified time (NGDM Lemma 1): :math:`\tau` with
        :math:`\bar\alpha(\tau) = \bar\alpha(t)^{\lambda}`, on the VP-equivalent
        :math:`\bar\alpha` (module docs).

        NGDM states the rule for the VP SDE: a pixel diffused by
        :math:`dy = -\tfrac12\beta\lambda y\,dt + \sqrt{\beta\lambda}\,dw` up to ``t`` has the
        marginal of the isotropic process at :math:`\tau`. With
        :math:`L_t = -\log\bar\alpha_t = \log(1 + e^{-\ell_t})` (:math:`\ell_t` the log-SNR)
        the rule is :math:`L_\tau = \lambda L_t`, i.e.

        .. math:: \ell_\tau = -\log\bigl(e^{\lambda L_t} - 1\bigr),

        which is the paper's rule on variance-preserving schedules and, through the
        VP-equivalence of processes with the same SNR, *our* extension to flow and VE schedules
        (NGDM itself only treats VP). Elementwise; ``t`` and ``lam`` broadcast.
        :math:`\lambda = 1 \Rightarrow \tau = t`, :math:`\lambda = 0 \Rightarrow \tau = 0`, and
        :math:`\tau` is non-decreasing in :math:`\lambda`. A time with :math:`\bar\alpha_t = 0`
        (rectified flow at ``t = 1``) maps every :math:`\lambda > 0` to ``t``.

        Args:
            t: times in ``[0, t_max]``, any shape.
            lam: noise levels :math:`\lambda \in [0, 1]`, any shape broadcastable with ``t``.

        Returns:
            float64 tensor of the broadcast shape.
        """
        t_t, lam_t = self._rectify_inputs(t, lam)
        L_t = torch.nn.functional.softplus(-self.log_snr(t_t))  # +inf where SNR = 0
        L = torch.where(lam_t == 0, 0.0, lam_t * L_t)
        # log(e^L - 1) = L + log(1 - e^{-L}), stable for small and large L.
        tau = self.time_of_log_snr(-(L + torch.log(-torch.expm1(-L))))
        return self._exact_ends(tau, t_t, lam_t)

    def _rectify_inputs(self, t: float | Tensor, lam: float | Tensor) -> tuple[Tensor, Tensor]:
        """Check ``t`` and ``lam`` and broadcast them to their common shape (float64, ``t``'s
        device); ``ValueError`` on a bad range, non-finite values or unbroadcastable shapes."""
        t_t = self.check_time(t)
        lam_t = as_time(lam, device=t_t.device, name="lam")
        check_in_range(lam_t, "lam", 0.0, 1.0)
        shape = broadcast_shape(t_t, lam_t, "t", "lam")
        return t_t.expand(shape), lam_t.expand(shape)

    @staticmethod
    def _exact_ends(tau: Tensor, t: Tensor, lam: Tensor) -> Tensor:
        r"""Pin :math:`\lambda = 1 \Rightarrow \tau = t` and :math:`\lambda = 0 \Rightarrow
        \tau = 0` exactly and keep :math:`0 \le \tau \le t` against rounding of the inverse."""
        tau = torch.minimum(tau.clamp_min(0), t)
        tau = torch.where(lam == 1, t, tau)
        return torch.where(lam == 0, torch.zeros_like(tau), tau)

    def start_times(self, lam: Tensor, t_start: float | Tensor | None = None) -> Tensor:
        r"""Per-pixel NGDM start times :math:`T_k = \tau_k(T)` (NGDM Algorithm 1, line 1).

        Args:
            lam: per-pixel noise levels :math:`\lambda_k \in [0, 1]`, any shape.
            t_start: the isotropic start time ``T`` (default ``t_max``).
        """
        return self.rectified_time(self.t_max if t_start is None else t_start, lam)
