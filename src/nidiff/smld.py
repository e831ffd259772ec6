r"""NI-SMLD: the variance-exploding (score-matching Langevin) family with structured noise.

GFF paper (Voleti, Pal & Oberman, 2022), Sec. 3, the non-isotropic form of Song & Ermon (2019):

* forward: :math:`x_\sigma = x_0 + \sigma\,\Sigma^{1/2}\varepsilon` for noise levels
  :math:`\sigma_1 > \dots > \sigma_L` (geometric);
* score: :math:`\nabla\log q(x_\sigma\mid x_0) = -\Sigma^{-1}(x_\sigma - x_0)/\sigma^2
  = -\Sigma^{-1/2}\varepsilon/\sigma`; the network predicts the **white** :math:`\hat\varepsilon`
  (``model(x, sigma, cond)``: the contract's time argument is :math:`\sigma` here), so the
  :math:`\sigma^2\Sigma`-weighted score-matching loss is
  :math:`\|\hat\varepsilon - \varepsilon\|^2`;
* sampling: annealed Langevin dynamics preconditioned by :math:`\Sigma`, for each level ``i``,
  ``n_steps`` times,

  .. math:: x \leftarrow x + \alpha_i\,\Sigma\,s(x, \sigma_i) + \sqrt{2\alpha_i}\,\Sigma^{1/2}z
            = x - \alpha_i\,\Sigma^{1/2}\hat\varepsilon/\sigma_i + \sqrt{2\alpha_i}\,\Sigma^{1/2}z,
            \qquad \alpha_i = \epsilon\,\sigma_i^2/\sigma_L^2,

  whose stationary law at a fixed level is the noised data :math:`p_{\sigma_i}` (the
  preconditioner :math:`\Sigma` leaves it unchanged).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._checks import check_finite, check_in_range, expand_like
from .models.contract import Denoiser
from .noise import IsotropicNoise, NoiseModel

__all__ = ["annealed_langevin", "geometric_sigmas", "smld_loss", "smld_noisy"]


def geometric_sigmas(sigma_max: float, sigma_min: float, levels: int) -> Tensor:
    """``levels`` noise levels from ``sigma_max`` down to ``sigma_min``, geometrically spaced."""
    if not (0 < sigma_min < sigma_max) or levels < 2:
        raise ValueError(
            f"need 0 < sigma_min < sigma_max and levels >= 2, got "
            f"{sigma_min=}, {sigma_max=}, {levels=}"
        )
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), levels, dtype=torch.float64)


def smld_noisy(x0: Tensor, sigma: Tensor, eps: Tensor, noise: NoiseModel | None = None) -> Tensor:
    r""":math:`x_\sigma = x_0 + \sigma\Sigma^{1/2}\varepsilon`; ``sigma``: scalar, ``(B,)``, map."""
    noise = noise if noise is not None else IsotropicNoise()
    s = expand_like(torch.as_tensor(sigma, dtype=x0.dtype, device=x0.device), x0, "sigma")
    return x0 + s * noise.color(eps)


def smld_loss(
    model: Denoiser,
    x0: Tensor,
    sigma: Tensor,
    eps: Tensor,
    noise: NoiseModel | None = None,
    cond: Any = None,
) -> Tensor:
    """Per-element white-ε regression at noise level ``sigma`` (reduction is the caller's)."""
    return (model(smld_noisy(x0, sigma, eps, noise), sigma, cond) - eps).square()


@torch.no_grad()
def annealed_langevin(
    model: Denoiser,
    x_init: Tensor,
    sigmas: Tensor,
    *,
    noise: NoiseModel | None = None,
    n_steps: int = 100,
    step_lr: float = 2e-5,
    cond: Any = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Annealed Langevin dynamics (see the module docstring); returns the final ``x``.

    Args:
        x_init: the start, e.g. ``sigmas[0] * noise.color(z)``, ``(B, *dims)``.
        sigmas: strictly decreasing positive levels ``(L,)``.
        n_steps: Langevin steps per level. step_lr: :math:`\\epsilon`.
        generator: the source of every Langevin noise draw.
    """
    noise = noise if noise is not None else IsotropicNoise()
    sig = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if sig.numel() < 1 or bool((sig <= 0).any()) or bool((sig[1:] >= sig[:-1]).any()):
        raise ValueError("sigmas must be positive and strictly decreasing")
    if n_steps < 1:
        raise ValueError(f"n_steps={n_steps} must be >= 1")
    check_in_range(step_lr, "step_lr", 0.0, float("inf"), low_open=True)
    check_finite(x_init, "x_init")
    x = x_init.clone()
    device = generator.device if generator is not None else x.device
    for s in sig:
        alpha = step_lr * float(s / sig[-1]) ** 2
        s_t = s.to(dtype=x.dtype, device=x.device)
        for _ in range(n_steps):
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)
            eps_hat = model(x, s_t, cond)
            x = x - alpha / float(s) * noise.color(eps_hat) + math.sqrt(2 * alpha) * noise.color(z)
    return x
