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

Implementation (:meth:`EdgePosterior.transition`). With :math:`\sigma = \sqrt{1-\bar\alpha}/B`
(:math:`B \ge 1` the bracket of EP eq. 11), the weights above reduce to one per-pixel map

.. math::
    q = \frac{\sigma^2_{t|s}}{\sigma_t^2} = 1 - K\Bigl(\frac{B_t}{B_s}\Bigr)^2, \qquad
    K = \frac{\bar\alpha_t(1-\bar\alpha_s)}{\bar\alpha_s(1-\bar\alpha_t)}, \qquad
    m = \frac{x_t - q\odot f_\theta}{\gamma}, \qquad
    \sqrt v = \frac{\sqrt{1-\bar\alpha_s}\,\sqrt q}{B_s},

(:math:`m = w_{x_t}x_t + w_{x_0}\hat x_0` with :math:`w_{x_t} = (1-q)/\gamma`,
:math:`w_{x_0} = \sqrt{\bar\alpha_s}\,q`). The edge map :math:`G(\hat x_0)` is computed once for
both brackets; the time-only terms (:math:`K`, :math:`\gamma`, :math:`\lambda`, :math:`\tau`) are
float64 scalars computed on the CPU from the grid's times, and the per-pixel arithmetic runs in
``x_t``'s dtype (at least float32): about 30 small kernels and no host-device synchronisation per
step for CPU (grid) times.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..noise.edge import EdgePreservingNoise, all_cpu, compute_dtype, time_coef
from ..noise.isotropic import IsotropicNoise
from .rule import OneEvaluation
from .transition import Transition, all_zero

__all__ = ["EdgePosterior", "edge_posterior_terms"]

#: Floor for :math:`\sigma^2_{t|s}` in :func:`edge_posterior_terms`. For a non-decreasing
#: :math:`\tau` (every class in :mod:`nidiff.noise.edge`) and a non-decreasing :math:`\lambda`, both
#: maps share one edge map and the bracket of EP eq. 11 is non-increasing in ``t``, so
#: :math:`\sigma^2_{t|s} \ge (\sigma_s^2/(1-\bar\alpha_s))(1-\bar\alpha_t/\bar\alpha_s) > 0`; the
#: floor only matters for a user-supplied non-monotone :math:`\tau`, where it turns the step into
#: the deterministic limit :math:`v \to 0`, :math:`m \to x_t/\gamma`.
#: :meth:`EdgePosterior.transition` applies the same guard as
#: :math:`q = \sigma^2_{t|s}/\sigma_t^2 \ge 0`, which gives that limit exactly.
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
    :data:`VAR_FLOOR`, so ``D > 0``. The literal reference form;
    :meth:`EdgePosterior.transition` uses the equivalent, cheaper form of the module docstring.
    """
    gamma2 = ab_t / ab_s
    var_s = sigma_s.square()
    var_ts = (sigma_t.square() - gamma2 * var_s).clamp_min(VAR_FLOOR)
    denom = var_ts + gamma2 * var_s
    return gamma2.sqrt() * var_s / denom, ab_s.sqrt() * var_ts / denom, var_s * var_ts / denom


@dataclass(frozen=True)
class EdgePosterior(OneEvaluation):
    r"""Step rule for edge-preserving models (EP eq. 12–14): ``transition(x_t, out, t, t_prev)``.

    Args:
        noise: the EP forward process the model was trained with (schedule, :math:`\lambda`,
            :math:`\tau`, edge operator must all match training).

    The returned :class:`~nidiff.samplers.transition.Transition` has a per-pixel ``std`` map and
    :class:`~nidiff.noise.isotropic.IsotropicNoise`: :math:`x_s = m + \sqrt{v}\odot z`.
    """

    noise: EdgePreservingNoise

    #: Every step that does not land on clean data draws noise.
    stochastic = True

    def transition(
        self, x_t: Tensor, out: Tensor, t: float | Tensor, t_prev: float | Tensor
    ) -> Transition:
        r"""One reverse step from ``t`` to ``t_prev`` (``0 <= t_prev < t``).

        Args:
            x_t: current sample ``(B, *dims)`` (e.g. ``(B, C, H, W)``).
            out: model output :math:`f_\theta(x_t, t) \approx \sigma_t\odot\varepsilon`, same shape.
            t, t_prev: scalar, ``(B,)`` or per-element times (:func:`nidiff._checks.expand_like`).

        Returns:
            ``Transition(mean=m, std=sqrt(v), noise=IsotropicNoise(), x0_hat, eps_hat=out,
            deterministic)``;
            ``mean`` and ``x0_hat`` have ``x_t``'s shape, ``std`` is broadcastable to it, all in
            ``x_t``'s dtype on its device. ``std`` is a per-pixel map (``(B, 1, H, W)`` for
            images) while the edges enter the step; in the isotropic phase
            (:math:`\tau(t) = \tau(t_{prev}) = 1` everywhere, known from CPU times) it is the DDPM
            std of the times' shape (``()`` for scalar times), and at ``t_prev = 0`` everywhere it
            is a 0-d zero with ``mean = x0_hat`` (exactly; also per element where
            ``t_prev = 0``).

        Raises:
            ValueError: on a shape mismatch, times outside ``[0, t_max]`` or ``t_prev >= t``.
        """
        if not isinstance(x_t, Tensor) or not x_t.is_floating_point():
            raise ValueError("x_t must be a floating tensor")
        if not isinstance(out, Tensor) or out.shape != x_t.shape:
            raise ValueError(
                f"out of shape {tuple(getattr(out, 'shape', ()))} must match x_t {tuple(x_t.shape)}"
            )
        # Times are checked where they live: grid times are CPU float64, so none of the checks
        # below touches the accelerator (times given on the device cost a synchronisation).
        # The model output is not checked for NaN/inf here (that would synchronise every step);
        # a non-finite output propagates to mean and std.
        noise = self.noise
        tt = noise.checked_time(t, x_t, "t")
        ts = noise.checked_time(t_prev, x_t, "t_prev").to(tt.device)
        if bool((ts >= tt).any()):
            raise ValueError("t_prev must be < t everywhere (the reverse step goes back in time)")
        log_t, lam_t, tau_t = noise.time_terms(tt)
        log_s, lam_s, tau_s = noise.time_terms(ts)

        cd = compute_dtype(x_t)
        x, f = x_t.to(cd), out.to(cd)
        x0_hat = (x - f) * time_coef(torch.exp(-0.5 * log_t), x)
        if all_cpu(ts, 0.0):  # the exact last step: mean = x0_hat, std = 0, no edge map needed
            return self._result(x_t, out, x0_hat, x0_hat.new_zeros(()), x0_hat, True)

        # Time-only terms in float64: γ⁻¹, K = γ²(1-ᾱ_s)/(1-ᾱ_t), sqrt(1-ᾱ_s).
        log_g2 = log_t - log_s  # log γ² < 0
        var_t = (-torch.expm1(log_t)).clamp_min(torch.finfo(torch.float64).tiny)  # t > 0
        var_s = (-torch.expm1(log_s)).clamp_min(0)
        inv_gamma = time_coef(torch.exp(-0.5 * log_g2), x)
        std_s = time_coef(var_s.sqrt(), x)

        iso_t, iso_s = all_cpu(tau_t, 1.0), all_cpu(tau_s, 1.0)  # τ = 1: B = 1, no edges
        if iso_t and iso_s:
            # Isotropic phase: B_t = B_s = 1, so the step is the DDPM posterior, q = 1 - K
            # (computed without cancellation), and the edges are not needed.
            q64 = -torch.expm1(log_g2) / var_t
            mean = _fma(x, f, -time_coef(q64, x)) * inv_gamma
            std64 = var_s.sqrt() * q64.sqrt()
            # Whether the std, rounded as the step uses it, is zero everywhere: read on the CPU
            # for grid times (in practice never: t_prev = 0 everywhere took the branch above).
            deterministic = all_zero(std64.to(cd).to(x_t.dtype))
            std = _as_tensor_on(time_coef(std64, x), x)
            return self._result(x_t, out, mean, std, x0_hat, deterministic)

        G = noise.edge_map(x0_hat)  # once for both brackets
        one = G.new_ones(())
        b_t = None if iso_t else noise.bracket(G, lam_t, tau_t, one)
        b_s = None if iso_s else noise.bracket(G, lam_s, tau_s, one)
        if b_s is None:  # B_s = 1 (only for a non-monotone tau)
            rho = b_t
        elif b_t is None:  # B_t = 1: the step that crosses into the edge-preserving phase
            rho = torch.reciprocal(b_s)
        else:
            rho = b_t / b_s
        K = time_coef(torch.exp(log_g2) * var_s / var_t, x)
        if isinstance(K, float):
            q = torch.addcmul(one, rho, rho, value=-K)
        else:
            q = torch.addcmul(one, rho.square(), K, value=-1)
        q = q.clamp_min(0)  # σ²_{t|s} >= 0: a non-monotone tau gives the v -> 0 limit
        mean = torch.addcmul(x, q, f, value=-1) * inv_gamma
        std = q.sqrt() if b_s is None else q.sqrt() / b_s
        # CPU times reach this point with some t_prev > 0 (else the first branch), where q > 0
        # for every non-decreasing τ (VAR_FLOOR): stochastic, known without reading the
        # per-pixel map back from the device. Device times (synchronising anyway) read it.
        deterministic = False if ts.device.type == "cpu" else None
        return self._result(x_t, out, mean, std * std_s, x0_hat, deterministic)

    @staticmethod
    def _result(
        x_t: Tensor,
        out: Tensor,
        mean: Tensor,
        std: Tensor,
        x0_hat: Tensor,
        deterministic: bool | None,
    ) -> Transition:
        dtype = x_t.dtype
        return Transition(
            mean=mean.to(dtype),
            std=std.to(dtype),
            noise=IsotropicNoise(),
            x0_hat=x0_hat.to(dtype),
            eps_hat=out,
            deterministic=deterministic,
        )


def _fma(x: Tensor, f: Tensor, c: float | Tensor) -> Tensor:
    """``x + c * f`` in one kernel (``c`` a Python float or a broadcastable tensor)."""
    return torch.add(x, f, alpha=c) if isinstance(c, float) else torch.addcmul(x, c, f)


def _as_tensor_on(v: float | Tensor, like: Tensor) -> Tensor:
    """A Python float as a 0-d tensor of ``like``'s dtype and device (a fill, no copy)."""
    return torch.full((), v, dtype=like.dtype, device=like.device) if isinstance(v, float) else v
