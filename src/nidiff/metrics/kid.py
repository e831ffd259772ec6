r"""Kernel Inception Distance: an unbiased MMD² with a cubic polynomial kernel.

Bińkowski et al. 2018, "Demystifying MMD GANs", §4. With the kernel

.. math::
    k(x, y) = \left(\tfrac{1}{D}\, x^\top y + 1\right)^3

and sets :math:`X` of size :math:`m`, :math:`Y` of size :math:`n`, the unbiased estimate is

.. math::
    \widehat{\mathrm{MMD}}^2 = \frac{1}{m(m-1)} \sum_{i \ne j} k(x_i, x_j)
        + \frac{1}{n(n-1)} \sum_{i \ne j} k(y_i, y_j) - \frac{2}{mn} \sum_{i, j} k(x_i, y_j).

It is zero in expectation when both sets come from the same distribution, so it can be
negative. KID averages it over random subsets; unlike FID it has no bias that depends on the
number of samples. Features are ``(N, D)`` (e.g. from :mod:`nidiff.metrics.features`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["KID", "kid", "mmd2_unbiased", "polynomial_kernel"]


class KID(NamedTuple):
    """Mean and standard deviation (over subsets, ``ddof = 0``) of the subset MMD² estimates."""

    mean: float
    std: float


def check_features(a: Tensor, name: str, min_rows: int = 2) -> Tensor:
    """Validate a feature set ``(N, D)``; return it detached in float64."""
    if not isinstance(a, Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(a).__name__}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be features (N, D), got shape {tuple(a.shape)}")
    if a.shape[0] < min_rows or a.shape[1] == 0:
        raise ValueError(
            f"{name} must have at least {min_rows} rows and one column, got {tuple(a.shape)}"
        )
    a = a.detach().to(torch.float64)
    if not bool(torch.isfinite(a).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return a


def polynomial_kernel(a: Tensor, b: Tensor, degree: int = 3, coef0: float = 1.0) -> Tensor:
    """Kernel matrix ``(N, M)`` with entries ``(a_i · b_j / D + coef0) ** degree``."""
    return (a @ b.T / a.shape[1] + coef0) ** degree


def mmd2_unbiased(a: Tensor, b: Tensor) -> float:
    """Unbiased MMD² between feature sets ``a`` ``(m, D)`` and ``b`` ``(n, D)`` (one estimate)."""
    a, b = check_features(a, "a"), check_features(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dims differ: {a.shape[1]} vs {b.shape[1]}")
    return float(_mmd2(a, b))


def _mmd2(a: Tensor, b: Tensor) -> Tensor:
    m, n = a.shape[0], b.shape[0]
    k_aa, k_bb, k_ab = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
    s_aa = (k_aa.sum() - k_aa.diagonal().sum()) / (m * (m - 1))
    s_bb = (k_bb.sum() - k_bb.diagonal().sum()) / (n * (n - 1))
    return s_aa + s_bb - 2 * k_ab.mean()


def kid(
    a_feats: Tensor,
    b_feats: Tensor,
    *,
    subsets: int = 100,
    subset_size: int | None = None,
    generator: torch.Generator | None = None,
) -> KID:
    """Kernel Inception Distance between feature sets ``a_feats`` and ``b_feats`` ``(N_·, D)``.

    Each of ``subsets`` rounds draws ``subset_size`` rows of each set without replacement
    (independently for the two sets) and computes :func:`mmd2_unbiased`.

    Args:
        subsets: number of random subsets.
        subset_size: rows per subset; default ``min(1000, N_a, N_b)``.
        generator: source of the subset draws; default a fresh generator seeded with 0, so
            results are reproducible and the global RNG is never touched.

    Returns:
        ``KID(mean, std)`` (a named tuple, unpacks as ``mean, std``).

    Raises:
        ValueError: on malformed features, differing feature dims, or a ``subset_size`` that is
            below 2 or larger than a set.
    """
    a, b = check_features(a_feats, "a_feats"), check_features(b_feats, "b_feats")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dims differ: {a.shape[1]} vs {b.shape[1]}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    na, nb = a.shape[0], b.shape[0]
    size = min(1000, na, nb) if subset_size is None else subset_size
    if not 2 <= size <= min(na, nb):
        raise ValueError(
            f"subset_size={size} must lie in [2, min(N_a, N_b) = {min(na, nb)}] "
            f"(N_a={na}, N_b={nb})"
        )
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    est = torch.empty(subsets, dtype=torch.float64)
    for s in range(subsets):
        ia = torch.randperm(na, generator=gen)[:size]
        ib = torch.randperm(nb, generator=gen)[:size]
        est[s] = _mmd2(a[ia.to(a.device)], b[ib.to(b.device)])
    return KID(float(est.mean()), float(est.std(correction=0)))
