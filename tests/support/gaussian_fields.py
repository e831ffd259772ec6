"""Smooth Gaussian images for the oracle tests: their closed-form denoisers make exact answers."""

from __future__ import annotations

import torch


def smooth_covariance(
    side: int = 8, *, scale: float, length2: float = 1.0, nugget: float
) -> torch.Tensor:
    r"""Squared-exponential covariance of the pixels of a ``side × side`` grid, float64:
    :math:`\Sigma_{pq} = s\,\exp(-\lVert p-q\rVert^2 / (2\ell^2)) + \nu\,\delta_{pq}` with
    ``scale`` :math:`s`, ``length2`` :math:`\ell^2` and ``nugget`` :math:`\nu` (keeps it well
    conditioned)."""
    ii, jj = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    p = torch.stack([ii.flatten(), jj.flatten()], 1).double()
    d2 = torch.cdist(p, p).square()
    return scale * torch.exp(-0.5 * d2 / length2) + nugget * torch.eye(side * side).double()
