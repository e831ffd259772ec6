r"""Frequency bands of images from Gaussian low-passes (the EP paper's Appendix B analog).

For increasing standard deviations :math:`0 = \sigma_0 < \sigma_1 < \dots < \sigma_K` (pixels)
let :math:`L_j = G_{\sigma_j} * x` be the low-pass versions (:math:`L_0 = x`; ``G`` is
:func:`nidiff.editing.gaussian_blur`: separable, kernel truncated at :math:`\lceil 3\sigma\rceil`
and renormalised, reflect padding). The band-pass images are the differences of consecutive
low-passes, and the last band is the coarsest low-pass itself:

.. math::
    B_j = L_j - L_{j+1} \quad (j < K), \qquad B_K = L_K, \qquad \sum_{j=0}^{K} B_j = x

(the sum telescopes, so it is exact up to rounding). :math:`B_0` holds the finest detail,
:math:`B_K` the coarsest structure; the frequency response of :math:`G_\sigma` is about
:math:`\exp(-2\pi^2\sigma^2 f^2)` at :math:`f` cycles per pixel.

EP Appendix B blurs the *dataset* with Gaussians of five standard deviations (one low-pass
version :math:`L_j` per "frequency band") and reports FID per version. The Gaussian kernel is
non-negative with unit sum, so a low-pass of an image in [−1, 1] stays in [−1, 1]; a band
:math:`B_j` (j < K) lies in [−2, 2], and :func:`half_band` maps it into [−1, 1] for feature
extractors that check their input range.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from nidiff.editing import gaussian_blur

__all__ = ["band_versions", "frequency_bands", "half_band", "lowpass_versions"]


def _check_sigmas(sigmas: Sequence[float]) -> list[float]:
    s = [float(v) for v in sigmas]
    if not s or s[0] <= 0 or any(b <= a for a, b in itertools.pairwise(s)):
        raise ValueError(f"sigmas must be positive and strictly increasing, got {list(sigmas)}")
    return s


def lowpass_versions(x: Tensor, sigmas: Sequence[float]) -> list[Tensor]:
    r"""The low-pass versions :math:`[L_1, \dots, L_K]` of ``x`` ``(N, C, H, W)`` (not ``x``
    itself), computed in float64 and returned in ``x``'s dtype; ``x`` is not modified.

    Raises:
        ValueError: ``sigmas`` empty, non-positive or not strictly increasing.
    """
    s = _check_sigmas(sigmas)
    x64 = x.detach().to(torch.float64)
    return [gaussian_blur(x64, v).to(x.dtype) for v in s]


def frequency_bands(x: Tensor, sigmas: Sequence[float]) -> list[Tensor]:
    r"""The ``K + 1`` bands :math:`[B_0, \dots, B_K]` of ``x`` for ``sigmas`` =
    :math:`[\sigma_1, \dots, \sigma_K]`; they sum to ``x``. Finest band first."""
    s = _check_sigmas(sigmas)
    x64 = x.detach().to(torch.float64)
    levels = [x64] + [gaussian_blur(x64, v) for v in s]
    bands = [a - b for a, b in itertools.pairwise(levels)] + [levels[-1]]
    return [b.to(x.dtype) for b in bands]


def half_band(b: Tensor) -> Tensor:
    """A band-pass image in [−2, 2] scaled by ½ into [−1, 1] (0 = no detail = mid-grey)."""
    return 0.5 * b


def band_versions(x: Tensor, sigmas: tuple[float, ...]) -> list[tuple[str, float, float, Tensor]]:
    """``(kind, σ_lo, σ_hi, images)`` for ``x`` itself (``lowpass``, 0, 0), each low-pass
    (``lowpass``, σ, σ) and each band-pass but the coarsest (``band``, σ_j, σ_{j+1}; halved
    into [−1, 1]); the coarsest band is the last low-pass."""
    out = [("lowpass", 0.0, 0.0, x)]
    out += [
        ("lowpass", s, s, lp) for s, lp in zip(sigmas, lowpass_versions(x, sigmas), strict=True)
    ]
    bands = frequency_bands(x, sigmas)[:-1]
    lows = (0.0, *sigmas)
    out += [("band", lows[j], lows[j + 1], half_band(b)) for j, b in enumerate(bands)]
    return out
