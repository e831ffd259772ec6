r"""Variance-preserving schedules, given by :math:`t \mapsto \bar\alpha(t)`.

:math:`\alpha_t = \sqrt{\bar\alpha_t}` and :math:`\sigma_t = \sqrt{1-\bar\alpha_t}`, so
:math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\Sigma^{1/2}\varepsilon` (DDPM,
NI-DDPM, NGDM, EP). A discrete schedule with ``T`` training steps has ``t_max = T`` and
:math:`\bar\alpha_t = \prod_{s=1}^t \alpha_s`, so paper time ``t`` is diffusers' integer timestep
``t - 1``; the continuous VP schedule has ``t_max = 1``.

These schedules work in :math:`\log\bar\alpha`, where the NGDM power rule
:math:`\bar\alpha(\tau) = \bar\alpha(t)^\lambda` is linear, and every coefficient is formed from
it directly (``expm1`` keeps :math:`1-\bar\alpha` accurate near ``t = 0``).
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from .._checks import as_time, check_in_range
from .base import Schedule

__all__ = ["AlphaBarSchedule"]


class AlphaBarSchedule(Schedule):
    r"""A variance-preserving schedule given by a monotone :math:`t \mapsto \bar\alpha(t)`.

    Subclasses implement :meth:`_log_alpha_bar` and its inverse :meth:`_time_of_log_alpha_bar`;
    every other quantity (coefficients, log-SNR, NGDM rectified time) follows from those two.
    """

    @abstractmethod
    def _log_alpha_bar(self, t: Tensor) -> Tensor:
        """:math:`\\log\\bar\\alpha(t)` for float64 ``t`` already checked to lie in range."""

    @abstractmethod
    def _time_of_log_alpha_bar(self, log_ab: Tensor) -> Tensor:
        """Inverse of :meth:`_log_alpha_bar` for float64 values in ``[log ᾱ(t_max), 0]``."""

    # ----------------------------------------------------------- the (α, σ) contract
    def _log_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        log_ab = self._log_alpha_bar(t)
        return 0.5 * log_ab, 0.5 * torch.log(-torch.expm1(log_ab))

    def _time_of_log_snr(self, log_snr: Tensor) -> Tensor:
        log_ab = -torch.nn.functional.softplus(-log_snr)
        lo = float(self._log_alpha_bar(torch.tensor(self.t_max, dtype=torch.float64)))
        return self._time_of_log_alpha_bar(log_ab.clamp(lo, 0.0))

    def coefficients(self, t: float | Tensor) -> tuple[Tensor, Tensor]:
        r"""Return :math:`(\sqrt{\bar\alpha_t}, \sqrt{1-\bar\alpha_t})` in float64."""
        log_ab = self.log_alpha_bar(t)
        return (0.5 * log_ab).exp(), (-torch.expm1(log_ab)).clamp_min(0).sqrt()

    def sigma2(self, t: float | Tensor) -> Tensor:
        r""":math:`1-\bar\alpha_t` in float64."""
        return -torch.expm1(self.log_alpha_bar(t))

    def log_snr(self, t: float | Tensor) -> Tensor:
        r""":math:`\log\bar\alpha_t - \log(1-\bar\alpha_t)`."""
        log_ab = self.log_alpha_bar(t)
        return log_ab - torch.log(-torch.expm1(log_ab))

    def transition_var(self, t: float | Tensor, s: float | Tensor) -> Tensor:
        r""":math:`\sigma^2_{t|s} = 1 - \bar\alpha_t/\bar\alpha_s` (the DDPM :math:`\beta` of the
        step ``s -> t``)."""
        log_ab = self.log_alpha_bar(t)
        return -torch.expm1(log_ab - self.log_alpha_bar(s).to(log_ab.device))

    def log_alpha_bar(self, t: float | Tensor) -> Tensor:
        r""":math:`\log\bar\alpha(t)` in float64, elementwise, for ``t`` in ``[0, t_max]``."""
        return self._log_alpha_bar(self.check_time(t))

    def alpha_bar(self, t: float | Tensor) -> Tensor:
        r""":math:`\bar\alpha(t)` in float64, elementwise."""
        return self.log_alpha_bar(t).exp()

    def time_of_alpha_bar(self, alpha_bar: float | Tensor) -> Tensor:
        r"""The time :math:`t` with :math:`\bar\alpha(t) = ` ``alpha_bar`` (elementwise inverse)."""
        ab = as_time(alpha_bar, name="alpha_bar")
        check_in_range(ab, "alpha_bar", float(self.alpha_bar(self.t_max)), 1.0)
        return self._time_of_log_alpha_bar(ab.log())

    def rectified_time(self, t: float | Tensor, lam: float | Tensor) -> Tensor:
        r"""NGDM rectified time (NGDM Lemma 1): :math:`\tau` with
        :math:`\bar\alpha(\tau) = \bar\alpha(t)^{\lambda}`.

        A pixel diffused by the non-isotropic forward SDE
        :math:`dy = -\tfrac12\beta(t)\lambda y\,dt + \sqrt{\beta(t)\lambda}\,dw` up to time ``t``
        has the marginal of the isotropic process at time :math:`\tau`. Elementwise; ``t`` and
        ``lam`` broadcast against each other. :math:`\lambda = 1 \Rightarrow \tau = t`,
        :math:`\lambda = 0 \Rightarrow \tau = 0`, and :math:`\tau` is non-decreasing in
        :math:`\lambda`. (The same rule as :meth:`Schedule.rectified_time`, computed in
        :math:`\log\bar\alpha` where it is linear.)

        Args:
            t: times in ``[0, t_max]``, any shape.
            lam: noise levels :math:`\lambda \in [0, 1]`, any shape broadcastable with ``t``.

        Returns:
            float64 tensor of the broadcast shape.
        """
        t_t, lam_t = self._rectify_inputs(t, lam)
        tau = self._time_of_log_alpha_bar(lam_t * self._log_alpha_bar(t_t))
        return self._exact_ends(tau, t_t, lam_t)
