r"""Diversity of several edits of one input: their mean pairwise distance.

For ``K`` edits :math:`e_1, \dots, e_K` of the same input,

.. math::
    \mathrm{div} = \binom{K}{2}^{-1} \sum_{i < j} d(e_i, e_j),

with ``d`` the per-pixel mean squared difference by default, or any distance callable (e.g.
LPIPS through :func:`nidiff.metrics.hooks.lpips_distance`). Identical edits give 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["Distance", "diversity", "pixel_mse"]

Distance = Callable[[Tensor, Tensor], Tensor]
"""``d(a, b) -> (M,)``: one distance per image pair ``a[m], b[m]``, images ``(M, C, H, W)``."""


def pixel_mse(a: Tensor, b: Tensor) -> Tensor:
    """Per-pair mean squared difference over channels and pixels, ``(M,)``."""
    return (a - b).square().flatten(1).mean(1)


def diversity(edits: Tensor, distance: Distance | None = None) -> Tensor:
    """Mean pairwise distance between the edits of one input.

    Args:
        edits: ``(K, C, H, W)`` — K edits of one input — or ``(B, K, C, H, W)`` for B inputs.
        distance: ``d(a, b) -> (M,)`` over batches of pairs; default :func:`pixel_mse`.

    Returns:
        a 0-d float64 tensor for ``(K, C, H, W)``, or ``(B,)`` for ``(B, K, C, H, W)``.

    Raises:
        ValueError: for another shape, ``K < 2``, non-finite edits, or a distance returning a
            wrong shape.
    """
    if not isinstance(edits, Tensor):
        raise ValueError(f"edits must be a tensor, got {type(edits).__name__}")
    if edits.ndim not in (4, 5):
        raise ValueError(
            f"edits must be (K, C, H, W) or (B, K, C, H, W), got shape {tuple(edits.shape)}"
        )
    e = edits.detach()
    single = e.ndim == 4
    if single:
        e = e[None]
    B, K = e.shape[:2]
    if K < 2:
        raise ValueError(f"diversity needs at least K=2 edits per input, got K={K}")
    if not bool(torch.isfinite(e).all()):
        raise ValueError("edits contain non-finite values (NaN or inf)")
    d = pixel_mse if distance is None else distance
    i, j = torch.triu_indices(K, K, offset=1, device=e.device)
    P = i.numel()
    a = e[:, i].reshape(B * P, *e.shape[2:])
    b = e[:, j].reshape(B * P, *e.shape[2:])
    dist = torch.as_tensor(d(a, b)).detach()
    if dist.numel() != B * P:
        raise ValueError(
            f"distance must return one value per pair ({B * P}), got shape {tuple(dist.shape)}"
        )
    out = dist.reshape(B, P).to(torch.float64).mean(1)
    return out[0] if single else out
