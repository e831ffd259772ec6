r"""The edge-preserving reverse step: the Gaussian posterior of EP eq. 12–14.

For the EP forward process (:class:`~nidiff.noise.edge.EdgePreservingNoise`) the posterior
:math:`q(x_s \mid x_t, x_0)`, ``s < t``, is Gaussian with per-pixel (elementwise) terms

.. math::
    \gamma = \sqrt{\bar\alpha_t/\bar\alpha_s}, \qquad
    \sigma^2_{t|s} = \sigma_t^2 - \gamma^2\sigma_s^2, \qquad
    v = \Bigl(\frac{1}{\sigma_s^2} + \frac{\gamma^2}{\sigma^2_{t|s}}\Bigr)^{-1}, \qquad
    m = v\Bigl(\frac{\gamma}{\sigma^2_{t|s}}x_t + \frac{\sqrt{\bar\alpha_s}}{\sigma_s^2}x_0\Bigr),

with :math:`\sigma_t, \sigma_s` the EP noise maps of EP eq. 11. At sampling time :math:`x_0` is
replaced by :math:`\hat x_0 = (x_t - f_\theta)/\sqrt{\bar\alpha_t}`, where the network output
:math:`f_\theta \approx \sigma_t\odot\varepsilon` (EP eq. 15), and both maps are computed from
the edges of :math:`\hat x_0` (not clipped, as in the authors' code).

With :math:`\tau \equiv 1` every map is :math:`\sqrt{1-\bar\alpha}` and the step is exactly the
DDPM posterior.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import as_time, expand_like
from ..noise.edge import EdgePreservingNoise
from ..noise.isotropic import IsotropicNoise
from .transition import Transition

__all__ = ["EdgePosterior", "edge_posterior_terms"]

#: Floor for :math:`\sigma^2_{t|s}`. For a non-decreasing :math:`\tau` (every class in
#: :mod:`nidiff.noise.edge`) and a non-decreasing :math:`\lambda`, both maps share one edge map and
#: the bracket of EP eq. 11 is non-increasing in ``t``, so :math:`\sigma^2_{t|s} \ge
#: (\sigma_s^2/(1-\bar\alpha_s))(1-\bar\alpha_t/\bar\alpha_s) > 0`; the floor only matters for a
#: user-supplied non-monotone :math:`\tau` (or ``t_prev == t`` rounding), where it turns the step
#: into the deterministic limit :math:`v \to 0`, :math:`m \to x_t/\gamma`.
VAR_FLOOR = 1e-20


def edge_posterior_terms(
    ab_t: Tensor, ab_s: Tensor, sigma_t: Tensor, sigma_s: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    r"""The posterior weights of EP eq. 13–14, elementwise (all arguments broadcast).

    Returns ``(w_xt, w_x0, v)`` with :math:`m = w_{x_t} x_t + w_{x_0} x_0`. They are computed in
    the equivalent form :math:`D = \sigma^2_{t|s} + \gamma^2\sigma_s^2`,
    :math:`v = \sigma_s^2\sigma^2_{t|s}/D`, :math:`w_{x_t} = \gamma\sigma_s^2/D`,
    :math:`w_{x_0} = \sqrt{\bar\alpha_s}\,\sigma^2_{t|s}/D`, which has no division by
    :math:`\sigma_s^2`: at ``s = 0`` (:math:`\sigma_s = 0`, :math:`\bar\alpha_s = 1`) it gives the
    exact limit :math:`v = 0`, :math:`m = x_0`. :math:`\sigma^2_{t|s}` is floored at
    :data:`VAR_FLOOR`, so ``D > 0``.
    """
    gamma2 = ab_t / ab_s
    var_s = sigma_s.square()
    var_ts = (sigma_t.square() - gamma2 * var_s).clamp_min(VAR_FLOOR)
    denom = var_ts + gamma2 * var_s
    return gamma2.sqrt() * var_s / denom, ab_s.sqrt() * var_ts / denom, var_s * var_ts / denom


@dataclass(frozen=True)
class EdgePosterior:
    r"""Step rule for edge-preserving models (EP eq. 12–14): ``transition(x_t, out, t, t_prev)``.

    Args:
        noise: the EP forward process the model was trained with (schedule, :math:`\lambda`,
            :math:`\tau`, edge operator must all match training).

    The returned :class:`~nidiff.samplers.transition.Transition` has a per-pixel ``std`` map and
    :class:`~nidiff.noise.isotropic.IsotropicNoise`: :math:`x_s = m + \sqrt{v}\odot z`.
    """

    noise: EdgePreservingNoise

    def transition(
        self, x_t: Tensor, out: Tensor, t: float | Tensor, t_prev: float | Tensor
    ) -> Transition:
        r"""One reverse step from ``t`` to ``t_prev`` (``0 <= t_prev < t``).

        Args:
            x_t: current sample ``(B, *dims)`` (e.g. ``(B, C, H, W)``).
            out: model output :math:`f_\theta(x_t, t) \approx \sigma_t\odot\varepsilon`, same shape.
            t, t_prev: scalar, ``(B,)`` or per-element times (:func:`nidiff._checks.expand_like`).

        Returns:
            ``Transition(mean=m, std=sqrt(v), noise=IsotropicNoise(), x0_hat, eps_hat=out)``;
            ``mean`` and ``x0_hat`` have ``x_t``'s shape, ``std`` is a map broadcastable to it
            (``(B, 1, H, W)`` for images), all in ``x_t``'s dtype. At ``t_prev = 0``:
            ``mean = x0_hat`` and ``std = 0``.
        """
        if not isinstance(x_t, Tensor) or not x_t.is_floating_point():
            raise ValueError("x_t must be a floating tensor")
        if not isinstance(out, Tensor) or out.shape != x_t.shape:
            raise ValueError(
                f"out of shape {tuple(getattr(out, 'shape', ()))} must match x_t {tuple(x_t.shape)}"
            )
        sched = self.noise.schedule
        tt = expand_like(sched.check_time(as_time(t, device=x_t.device)), x_t, "t")
        ts = expand_like(
            sched.check_time(as_time(t_prev, device=x_t.device), "t_prev"), x_t, "t_prev"
        )
        if bool((ts >= tt).any()):
            raise ValueError("t_prev must be < t everywhere (the reverse step goes back in time)")
        ab_t, ab_s = sched.alpha_bar(tt), sched.alpha_bar(ts)
        x64 = x_t.to(torch.float64)
        x0_hat = (x64 - out.to(torch.float64)) / ab_t.sqrt()
        sigma_t = self.noise.sigma(x0_hat, tt)  # float64: x0_hat is float64
        sigma_s = self.noise.sigma(x0_hat, ts)
        w_xt, w_x0, v = edge_posterior_terms(ab_t, ab_s, sigma_t, sigma_s)
        mean = w_xt * x64 + w_x0 * x0_hat
        dtype = x_t.dtype
        return Transition(
            mean=mean.to(dtype),
            std=v.sqrt().to(dtype),
            noise=IsotropicNoise(),
            x0_hat=x0_hat.to(dtype),
            eps_hat=out,
        )
