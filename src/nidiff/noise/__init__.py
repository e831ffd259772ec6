r"""Noise models: the covariance :math:`\Sigma` of the forward noise as an object.

:class:`IsotropicNoise` (:math:`\Sigma = I`, DDPM), :class:`DiagonalNoise` (a per-pixel std map,
NGDM), :class:`GFFNoise` (Fourier-diagonal, NI-DDPM) and :class:`EdgePreservingNoise` (a
data-dependent diagonal, EP eq. 11). All share the :class:`NoiseModel` contract: ``color``,
``whiten``, ``apply`` and ``sample``.
"""

from .base import NoiseModel, dense_covariance, white_noise
from .diagonal import DiagonalNoise
from .edge import CosineTau, EdgePreservingNoise, LinearTau, SigmoidTau, SobelEdges
from .gff import GFFNoise
from .isotropic import IsotropicNoise

__all__ = [
    "CosineTau",
    "DiagonalNoise",
    "EdgePreservingNoise",
    "GFFNoise",
    "IsotropicNoise",
    "LinearTau",
    "NoiseModel",
    "SigmoidTau",
    "SobelEdges",
    "dense_covariance",
    "white_noise",
]
