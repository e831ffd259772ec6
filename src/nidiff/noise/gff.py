r"""Gaussian Free Field noise: :math:`\Sigma` diagonal in Fourier space (NI-DDPM, GFF paper).

Voleti, Pal & Oberman (2022) colour white noise by scaling each Fourier mode with
:math:`|k|^{-p}`; ``p = 1`` gives a 2-D Gaussian free field (power spectrum
:math:`\propto |k|^{-2}`).
With :math:`F` the unitary 2-D DFT over the last two dims ``(H, W)``,

.. math::
    \Sigma^{1/2} = F^{-1}\,\mathrm{diag}(A)\,F, \qquad
    \Sigma^{-1/2} = F^{-1}\,\mathrm{diag}(A^{-1})\,F, \qquad
    \Sigma = F^{-1}\,\mathrm{diag}(A^2)\,F .

Decisions (the paper leaves them open):

* **Frequency grid.** :math:`k = (k_x, k_y)` with ``torch.fft.fftfreq(H)`` × ``fftfreq(W)`` in
  cycles per pixel, :math:`|k| = \sqrt{k_x^2 + k_y^2}`, and :math:`A(k) = |k|^{-p}`. The grid
  is symmetric under :math:`k \to -k` (the Nyquist row/column maps to itself), so :math:`A` is
  real and even: :math:`\Sigma^{1/2}` is a real, symmetric, circulant convolution. It is applied
  with real FFTs (``rfft2``/``irfft2`` with ``s=(H, W)``), whose output is exactly real.
* **DC term.** :math:`|0|^{-p}` is infinite; we set :math:`A(0) = k_{\min}^{-p}` with
  :math:`k_{\min}` the smallest non-zero :math:`|k|` on the grid (:math:`1/\max(H, W)`). Every
  :math:`A > 0`, so :math:`\Sigma` is invertible and :meth:`GFFNoise.whiten` is exact.
* **Normalisation.** :math:`A` is rescaled so that :math:`\frac{1}{HW}\sum_k A(k)^2 = 1`. The
  diagonal of a circulant :math:`\Sigma` is that mean, so every pixel has variance exactly 1.
* **Channels.** Every leading index of ``(B, *lead, H, W)`` (batch, colour channel, ...) gets an
  *independent* field with the same spatial covariance: :math:`\Sigma = I \otimes \Sigma_{HW}`.
  One field shared by all channels would make :math:`\Sigma` singular across channels (rank
  ``HW`` out of ``C·HW``), so whitening, likelihoods and inversion would break.
* ``p = 0`` gives :math:`A \equiv 1`, i.e. white noise (the identity).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import NoiseModel

__all__ = ["GFFNoise"]

_CACHE_SIZE = 16


class GFFNoise(NoiseModel):
    r"""GFF noise :math:`\Sigma^{1/2} = F^{-1}\mathrm{diag}(A)F`, :math:`A \propto |k|^{-p}`.

    Acts on the last two dims of tensors ``(B, *lead, H, W)`` (at least 2-D, ``H, W >= 2``) in
    the input's dtype and device; never modifies its input. See the module docstring for the
    grid, DC and normalisation decisions.

    Args:
        power: the exponent :math:`p \ge 0` (finite). ``1`` is the Gaussian free field (default),
            ``0`` white noise; larger values give smoother noise.
    """

    def __init__(self, power: float = 1.0):
        power = float(power)
        if not math.isfinite(power) or power < 0:
            raise ValueError(
                f"power={power:g} must be finite and >= 0 (0 is white noise, 1 the GFF)"
            )
        self.power = power
        self._cache: dict[tuple, Tensor] = {}

    def amplitude(
        self,
        H: int,
        W: int,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Tensor:
        r"""The spectral amplitude :math:`A` on the full ``(H, W)`` ``fftfreq`` grid (a copy).

        :math:`A(k) = c\,|k|^{-p}` for :math:`k \ne 0`, :math:`A(0) = c\,k_{\min}^{-p}`, with
        :math:`c` chosen so that the mean of :math:`A^2` is 1.
        """
        return self._amplitude(int(H), int(W), dtype, torch.device(device or "cpu")).clone()

    def _amplitude(self, H: int, W: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        if H < 2 or W < 2:
            raise ValueError(f"GFFNoise needs H >= 2 and W >= 2, got H={H}, W={W}")
        key = (H, W, dtype, device)
        A = self._cache.get(key)
        if A is None:
            kx = torch.fft.fftfreq(H, dtype=torch.float64)
            ky = torch.fft.fftfreq(W, dtype=torch.float64)
            k = torch.sqrt(kx[:, None] ** 2 + ky[None, :] ** 2)
            k[0, 0] = k[k > 0].min()  # DC takes the amplitude of the lowest non-zero frequency
            A = k.pow(-self.power)
            A = (A / A.square().mean().sqrt()).to(dtype=dtype, device=device)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = A
        return A

    def _filter(self, x: Tensor, exponent: int) -> Tensor:
        r""":math:`F^{-1}\mathrm{diag}(A^{e})F\,x` over the last two dims of ``x``."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ValueError(f"GFFNoise needs a real floating tensor, got {getattr(x, 'dtype', x)}")
        if x.ndim < 2:
            raise ValueError(
                f"GFFNoise acts on the last two dims (H, W); got a {x.ndim}-d tensor "
                f"of shape {tuple(x.shape)}"
            )
        H, W = x.shape[-2:]
        A = self._amplitude(H, W, x.dtype, x.device)[:, : W // 2 + 1]
        return torch.fft.irfft2(torch.fft.rfft2(x) * A.pow(exponent), s=(H, W))

    def color(self, z: Tensor) -> Tensor:
        r""":math:`\Sigma^{1/2} z` = ``irfft2(A · rfft2(z))``; ``z`` is ``(B, *lead, H, W)``."""
        return self._filter(z, 1)

    def whiten(self, x: Tensor) -> Tensor:
        r""":math:`\Sigma^{-1/2} x`: ``irfft2(rfft2(x) / A)``; exact, since :math:`A > 0`."""
        return self._filter(x, -1)

    def apply(self, x: Tensor) -> Tensor:
        r""":math:`\Sigma x`: ``irfft2(A² · rfft2(x))``."""
        return self._filter(x, 2)

    def to_spec(self) -> dict:
        return {"kind": "gff", "power": self.power}

    def __repr__(self) -> str:
        return f"GFFNoise(power={self.power:g})"
