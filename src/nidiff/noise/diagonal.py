r"""Diagonal noise :math:`\Sigma = \mathrm{diag}(s^2)`: a per-pixel standard deviation map.

NGDM's forward process gives each pixel its own variance (NGDM eq. 6–7); the edge-preserving
process (EP eq. 11) is diagonal too, with a map that depends on :math:`x_0` and ``t``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_finite
from .base import NoiseModel

__all__ = ["DiagonalNoise"]


class DiagonalNoise(NoiseModel):
    r""":math:`\Sigma^{1/2} = \mathrm{diag}(s)` with ``std`` = :math:`s \ge 0`.

    Args:
        std: per-element standard deviations, broadcastable to the noise shape, e.g.
            ``(1, 1, H, W)``
            for one map shared by the batch and channels, or ``(B, C, H, W)``.

    Where ``std == 0`` the covariance is singular; :meth:`whiten` then returns 0 there
    (the Moore–Penrose pseudo-inverse), so ``whiten(color(z))`` recovers ``z`` only where
    ``std > 0``.
    """

    def __init__(self, std: Tensor):
        std = torch.as_tensor(std)
        check_finite(std, "std")
        if bool((std < 0).any()):
            raise ValueError("std must be >= 0 everywhere")
        self.std = std

    def _std_for(self, x: Tensor) -> Tensor:
        s = self.std.to(dtype=x.dtype, device=x.device)
        try:
            torch.broadcast_shapes(s.shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"std of shape {tuple(s.shape)} does not broadcast to {tuple(x.shape)}"
            ) from None
        return s

    def color(self, z: Tensor) -> Tensor:
        return self._std_for(z) * z

    def whiten(self, x: Tensor) -> Tensor:
        s = self._std_for(x)
        return torch.where(
            s > 0, x / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(x)
        )

    def apply(self, x: Tensor) -> Tensor:
        return self._std_for(x).square() * x

    def to_spec(self) -> dict:
        """Shape and SHA-256 of the std map: enough to recognise it, not to rebuild it."""
        import hashlib

        std = self.std.detach().to("cpu", torch.float64).contiguous()
        digest = hashlib.sha256(std.numpy().tobytes()).hexdigest()
        return {"kind": "diagonal", "shape": list(std.shape), "std_sha256": digest}

    def __repr__(self) -> str:
        return f"DiagonalNoise(std of shape {tuple(self.std.shape)})"
