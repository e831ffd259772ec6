r"""Fréchet distance between Gaussian fits of two feature sets.

FID when the features are Inception's; nidiff defaults to the bundled classifier's penultimate
layer.

.. math::
    d^2 = \|\mu_1-\mu_2\|^2
          + \mathrm{Tr}\bigl(C_1 + C_2 - 2(C_1^{1/2} C_2 C_1^{1/2})^{1/2}\bigr)

computed in float64 with symmetric eigendecompositions (no complex ``sqrtm``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["frechet_distance", "gaussian_fit"]


def gaussian_fit(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``features`` ``(N, D)``, in float64."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D), got {tuple(features.shape)}")
    f = features.detach().to(torch.float64)
    mu = f.mean(0)
    fc = f - mu
    return mu, fc.T @ fc / (f.shape[0] - 1)


def _psd_sqrt(c: Tensor) -> Tensor:
    w, v = torch.linalg.eigh(c)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between the Gaussian fits of feature sets ``a`` and ``b`` ``(N, D)``."""
    mu1, c1 = gaussian_fit(a)
    mu2, c2 = gaussian_fit(b)
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dims differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    s1 = _psd_sqrt(c1)
    cross = torch.linalg.eigvalsh(s1 @ c2 @ s1).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + c1.trace() + c2.trace() - 2 * cross)
