r"""NGDM's input-dependent weighting map (NGDM Sec. 3.4, after DiffEdit's mask).

For a source image :math:`I`, a source condition :math:`R` and a target condition :math:`Q`:

.. math::
    x^{(j)} &= \sqrt{\bar\alpha_s}\,I + \sqrt{1-\bar\alpha_s}\,\Sigma^{1/2}z^{(j)}, \qquad
        s = \text{strength}\cdot t_{max},\ j = 1..n, \\
    D &= \frac1n\sum_j \operatorname{mean}_c
        \bigl|\Sigma^{1/2}\bigl(\hat\varepsilon(x^{(j)}, s, R)
        - \hat\varepsilon(x^{(j)}, s, Q)\bigr)\bigr|, \\
    A(I) &= \operatorname{minmax}\bigl(\min(G_\sigma * D,\ c\cdot\operatorname{mean}(G_\sigma * D))
        \bigr) \in [0, 1], \qquad
    \lambda = \frac{1}{1 + e^{-(aA - b)}} .

Paper values: ``strength = 0.5``, ``n = 10``, ``a = 10``, ``b = 5``; the smoothing width and the
optional clamp ``c`` (DiffEdit uses 3) are not given in the paper and are exposed here.

**Coloured, not white, predictions.** :math:`D` compares the noise as it appears in the image,
:math:`\Sigma^{1/2}\hat\varepsilon` (``process.noise.color``), because that is what the two
conditions change in pixel space. NGDM and DiffEdit use isotropic models, where :math:`\Sigma = I`
and both readings coincide. A GFF network predicts the *white* :math:`\hat\varepsilon`, the
coloured noise passed through the high-pass :math:`\Sigma^{-1/2}`: comparing white predictions
lights up the borders of the edited region rather than its inside.
Edge-preserving models already output the coloured :math:`\sigma_t\odot\hat\varepsilon`
(EP eq. 15), which is used as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_finite, check_image, check_in_range
from ..models.contract import Denoiser, concat_cond, with_guidance
from ..noise.base import white_noise
from ..process import Process
from ..schedule import DiscreteSchedule

__all__ = ["WeightMap", "gaussian_blur", "lam_from_map", "weighting_map"]


@dataclass(frozen=True, eq=False)
class WeightMap:
    """The result of :func:`weighting_map`.

    Attributes:
        A: the normalised map :math:`A(I)` ``(B, 1, *spatial)`` in ``[0, 1]``.
        diff: the raw map :math:`D` (mean :math:`|\\Sigma^{1/2}\\Delta\\hat\\varepsilon|` over
            channels and draws, before smoothing, clamping and normalisation)
            ``(B, 1, *spatial)``.
        lam: :math:`\\lambda = \\mathrm{sigmoid}(aA - b)` ``(B, 1, *spatial)``, for :func:`ngdm`.
        t: the (paper) time the source was noised to.
        nfe: model calls spent (a guided call counts once).
    """

    A: Tensor
    diff: Tensor
    lam: Tensor
    t: float
    nfe: int


def lam_from_map(A: Tensor, a: float = 10.0, b: float = 5.0) -> Tensor:
    r"""NGDM Sec. 3.4: :math:`\lambda = 1/(1 + \exp(-(aA - b)))`, elementwise.

    With the defaults a pixel with :math:`A = 0` gets :math:`\lambda \approx 0.0067` (lightly
    regenerated, not preserved); pass a binary mask to :func:`ngdm` for exact preservation.
    """
    if not isinstance(A, Tensor) or not A.is_floating_point():
        raise ValueError("A must be a floating-point tensor")
    check_finite(A, "A")
    for name, v in (("a", a), ("b", b)):
        check_in_range(v, name, -math.inf, math.inf)
    return torch.sigmoid(a * A - b)


def weighting_map(
    model: Denoiser,
    x0: Tensor,
    process: Process,
    *,
    source_cond: Any,
    target_cond: Any,
    strength: float = 0.5,
    n: int = 10,
    guidance: float = 1.0,
    null_cond: Any = None,
    sigma: float = 1.0,
    clamp: float | None = None,
    a: float = 10.0,
    b: float = 5.0,
    generator: torch.Generator | None = None,
    batch: int | None = None,
) -> WeightMap:
    r"""Estimate where the source and target conditions disagree (NGDM Sec. 3.4; module docs).

    Args:
        model: ``out = model(x_t, t, cond)``.
        x0: source images ``(B, C, *spatial)``; never modified.
        process: the model's process (its ``q_sample`` noises the source, its noise colours the
            predictions before they are compared).
        source_cond, target_cond: the conditions :math:`R` and :math:`Q`, batched like ``x0``
            (a 0-d tensor or a batch of 1 is repeated over the batch).
        strength: noise level as a fraction of ``t_max``, in ``(0, 1]`` (paper 0.5). On a
            :class:`DiscreteSchedule` the time is rounded to the nearest integer step (>= 1).
        n: number of noise draws, ``>= 1`` (paper 10); each draw takes fresh white noise.
        guidance: classifier-free guidance for both predictions (``1`` = plain conditional
            predictions, as in the paper); ``!= 1`` needs ``null_cond``.
        sigma: std of the Gaussian smoothing in pixels, ``>= 0`` (``0`` = none); separable,
            reflect padding, truncated at ``3 sigma``.
        clamp: if given (``> 0``), clip the smoothed map at ``clamp`` times its per-image mean
            before normalising (DiffEdit uses 3).
        a, b: the sigmoid of :func:`lam_from_map`.
        generator: source of the white noise (``n`` draws of ``x0``'s shape, in order).
        batch: largest number of images per model call (``>= 1``); default: all ``2 n B``
            evaluations in one call. The map does not depend on it (up to the model's batch
            invariance).

    Returns:
        :class:`WeightMap`; a constant map normalises to zeros.
    """
    x0 = check_image(x0, spatial=True)
    check_in_range(strength, "strength", 0.0, 1.0, low_open=True)
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n={n!r} must be an integer >= 1")
    check_in_range(sigma, "sigma", 0.0, math.inf)
    if clamp is not None:
        check_in_range(clamp, "clamp", 0.0, math.inf, low_open=True)
    if batch is not None and (isinstance(batch, bool) or int(batch) != batch or batch < 1):
        raise ValueError(f"batch={batch!r} must be None or an integer >= 1")
    model = with_guidance(model, guidance, null_cond)
    t = _noise_time(process, strength)
    B, n = x0.shape[0], int(n)
    zs = [white_noise(x0.shape, generator=generator, dtype=x0.dtype) for _ in range(n)]
    x_t = torch.cat([process.q_sample(x0, t, z.to(x0.device)) for z in zs])  # (nB, ...)
    x_in = torch.cat([x_t, x_t])
    c_in = concat_cond(_tile(source_cond, B, n), _tile(target_cond, B, n))
    size = x_in.shape[0] if batch is None else int(batch)
    t_in = torch.tensor(t, dtype=torch.promote_types(x0.dtype, torch.float32), device=x0.device)
    outs = []
    for s in range(0, x_in.shape[0], size):
        outs.append(model(x_in[s : s + size], t_in, _take(c_in, slice(s, s + size))))
    # The difference of the predicted noise Σ^{1/2}ε̂ (whatever the network predicts); the
    # per-image min-max normalisation below makes its units irrelevant.
    out = process.eps_sigma(x_in, torch.cat(outs), t).reshape(2, n, *x0.shape)
    diff = (out[0] - out[1]).abs().mean(dim=(0, 2)).unsqueeze(1)  # (B, 1, *spatial)
    smooth = gaussian_blur(diff, sigma)
    if clamp is not None:
        mean = smooth.flatten(1).mean(1).reshape(B, *[1] * (smooth.ndim - 1))
        smooth = torch.minimum(smooth, clamp * mean)
    A = _minmax(smooth)
    return WeightMap(A=A, diff=diff, lam=lam_from_map(A, a, b), t=t, nfe=len(outs))


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian smoothing of ``x`` ``(B, C, *spatial)`` over every spatial axis.

    Std ``sigma`` pixels (``0`` returns ``x``), kernel truncated at ``ceil(3 sigma)`` (and at the
    axis length − 1, as reflect padding requires) and renormalised; reflect padding.
    """
    check_in_range(sigma, "sigma", 0.0, math.inf)
    if sigma == 0:
        return x
    for axis in range(2, x.ndim):
        L = x.shape[axis]
        r = min(math.ceil(3 * sigma), L - 1)
        if r < 1:
            continue
        k = torch.arange(-r, r + 1, dtype=torch.float64)
        k = torch.exp(-0.5 * (k / sigma) ** 2)
        k = (k / k.sum()).to(dtype=x.dtype, device=x.device).reshape(1, 1, -1)
        moved = x.movedim(axis, -1)
        flat = moved.reshape(-1, 1, L)
        out = F.conv1d(F.pad(flat, (r, r), mode="reflect"), k)
        x = out.reshape(moved.shape).movedim(-1, axis)
    return x


# ------------------------------------------------------------------ helpers
def _noise_time(process: Process, strength: float) -> float:
    t = float(strength) * process.schedule.t_max
    if isinstance(process.schedule, DiscreteSchedule):
        t = float(max(1, round(t)))
    return t


def _tile(cond: Any, B: int, n: int) -> Any:
    """Repeat a condition for ``n`` stacked copies of a batch of ``B``."""
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {k: _tile(v, B, n) for k, v in cond.items()}
    if not isinstance(cond, Tensor):
        raise ValueError(f"conditions must be tensors, dicts of tensors or None, not {cond!r}")
    if cond.ndim == 0:
        cond = cond.expand(B)
    elif cond.shape[0] == 1 and B > 1:
        cond = cond.expand(B, *cond.shape[1:])
    if cond.shape[0] != B:
        raise ValueError(f"a condition of batch {cond.shape[0]} does not fit {B} images")
    return torch.cat([cond] * n)


def _take(cond: Any, sl: slice) -> Any:
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {k: _take(v, sl) for k, v in cond.items()}
    return cond[sl]


def _minmax(m: Tensor) -> Tensor:
    """Per-image min-max normalisation to ``[0, 1]``; a constant image maps to zeros."""
    flat = m.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    shape = (m.shape[0], *[1] * (m.ndim - 1))
    lo, span = lo.reshape(shape), (hi - lo).reshape(shape)
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (m - lo) / safe, torch.zeros_like(m)).clamp(0, 1)
