r"""The noise schedule: a map from time :math:`t` to :math:`\bar\alpha(t)`.

Conventions (paper notation, shared by all four papers):

* :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\Sigma^{1/2}\varepsilon`,
  :math:`\varepsilon \sim \mathcal N(0, I)`.
* Time runs from ``0`` (clean data, :math:`\bar\alpha(0) = 1`) to ``t_max`` (the noisiest
  training time). A discrete schedule with ``T`` training steps has ``t_max = T`` and
  :math:`\bar\alpha_t = \prod_{s=1}^t \alpha_s`, so paper time ``t`` is diffusers' integer
  timestep ``t - 1``; the continuous VP schedule has ``t_max = 1``.
* Schedules work in float64 and in :math:`\log\bar\alpha`, where the NGDM power rule
  :math:`\bar\alpha(\tau) = \bar\alpha(t)^\lambda` is linear.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from .._checks import as_time, broadcast_shape, check_in_range

__all__ = ["Schedule"]


class Schedule(ABC):
    r"""A monotone map :math:`t \mapsto \bar\alpha(t)` on ``[0, t_max]``.

    Subclasses implement :meth:`log_alpha_bar` and its inverse :meth:`time_of_log_alpha_bar`;
    everything else (coefficients, NGDM rectified time) follows from those two.

    All methods are elementwise: ``t`` may have any shape (a scalar, ``(B,)``, a per-pixel map).
    """

    #: Largest valid time (``T`` for discrete schedules, ``1`` for the continuous VP).
    t_max: float

    @abstractmethod
    def _log_alpha_bar(self, t: Tensor) -> Tensor:
        """:math:`\\log\\bar\\alpha(t)` for float64 ``t`` already checked to lie in range."""

    @abstractmethod
    def _time_of_log_alpha_bar(self, log_ab: Tensor) -> Tensor:
        """Inverse of :meth:`_log_alpha_bar` for float64 values in ``[log ᾱ(t_max), 0]``."""

    # ------------------------------------------------------------------ public, checked API
    def check_time(self, t: float | Tensor, name: str = "t") -> Tensor:
        """Return ``t`` as float64, raising ``ValueError`` if it leaves ``[0, t_max]``."""
        tt = as_time(t)
        check_in_range(tt, name, 0.0, self.t_max)
        return tt

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

    def coefficients(self, t: float | Tensor) -> tuple[Tensor, Tensor]:
        r"""Return :math:`(\sqrt{\bar\alpha_t}, \sqrt{1-\bar\alpha_t})` in float64."""
        log_ab = self.log_alpha_bar(t)
        return (0.5 * log_ab).exp(), (-torch.expm1(log_ab)).clamp_min(0).sqrt()

    def rectified_time(self, t: float | Tensor, lam: float | Tensor) -> Tensor:
        r"""NGDM rectified time (NGDM Lemma 1): :math:`\tau` with
        :math:`\bar\alpha(\tau) = \bar\alpha(t)^{\lambda}`.

        A pixel diffused by the non-isotropic forward SDE
        :math:`dy = -\tfrac12\beta(t)\lambda y\,dt + \sqrt{\beta(t)\lambda}\,dw` up to time ``t``
        has the marginal of the isotropic process at time :math:`\tau`. Elementwise; ``t`` and
        ``lam`` broadcast against each other. :math:`\lambda = 1 \Rightarrow \tau = t`,
        :math:`\lambda = 0 \Rightarrow \tau = 0`, and :math:`\tau` is non-decreasing in
        :math:`\lambda`.

        Args:
            t: times in ``[0, t_max]``, any shape.
            lam: noise levels :math:`\lambda \in [0, 1]`, any shape broadcastable with ``t``.

        Returns:
            float64 tensor of the broadcast shape.
        """
        t_t, lam_t = self._rectify_inputs(t, lam)
        tau = self._time_of_log_alpha_bar(lam_t * self._log_alpha_bar(t_t))
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
