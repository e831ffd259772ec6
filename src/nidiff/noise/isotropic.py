r"""Isotropic noise :math:`\Sigma = I` (DDPM)."""

from __future__ import annotations

from torch import Tensor

from .base import NoiseModel

__all__ = ["IsotropicNoise"]


class IsotropicNoise(NoiseModel):
    r""":math:`\Sigma = I`: every operation is the identity (returns its input, uncopied)."""

    def color(self, z: Tensor) -> Tensor:
        return z

    def whiten(self, x: Tensor) -> Tensor:
        return x

    def apply(self, x: Tensor) -> Tensor:
        return x

    def to_spec(self) -> dict:
        return {"kind": "isotropic"}

    def __repr__(self) -> str:
        return "IsotropicNoise()"
