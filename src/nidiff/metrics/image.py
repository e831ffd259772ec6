r"""Per-image fidelity metrics: MSE, PSNR, SSIM, and their masked ("background preservation") forms.

Images are ``(N, C, H, W)`` tensors whose values span at most ``data_range`` (nidiff's images lie
in [−1, 1], so ``data_range = 2``). Every function returns one value per image, ``(N,)`` float64.

.. math::
    \mathrm{PSNR} = 10 \log_{10} \frac{R^2}{\mathrm{MSE}}, \qquad
    \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + c_1)(2\sigma_{xy} + c_2)}
                               {(\mu_x^2+\mu_y^2 + c_1)(\sigma_x^2+\sigma_y^2 + c_2)},
    \quad c_1 = (0.01R)^2,\ c_2 = (0.03R)^2

with local statistics taken over a sliding window (Wang et al. 2004, "Image quality assessment:
from error visibility to structural similarity"). Two windows are offered, both matching
``skimage.metrics.structural_similarity``:

* ``sigma=1.5`` (default): an 11×11 Gaussian window, σ = 1.5, weighted (population) covariances —
  the paper's setting, skimage's ``gaussian_weights=True, use_sample_covariance=False``;
* ``sigma=None``: a uniform ``window``×``window`` box (default 7) with sample covariances
  (divided by ``n − 1``) — skimage's default.

SSIM of an image is the mean of its SSIM map over every window position lying fully inside the
image (averaged over channels), as skimage does.

Masked forms take a binary ``mask`` broadcastable to ``(N, C, H, W)`` and evaluate the metric on
the region where ``mask == 0`` ("background preservation": how well an edit left the unedited
pixels alone), or where ``mask == 1`` with ``inside=True``. Masked SSIM averages the SSIM map
over the window positions whose whole window lies in the region, so pixels outside the region
cannot influence the value.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "masked_mse",
    "masked_psnr",
    "masked_ssim",
    "mse",
    "psnr",
    "ssim",
    "ssim_map",
]

_K1, _K2 = 0.01, 0.03


def _check_pair(x: Tensor, y: Tensor, data_range: float) -> tuple[Tensor, Tensor]:
    """Validate two image batches; return them detached in float64 (never modified in place)."""
    for name, v in (("x", x), ("y", y)):
        if not isinstance(v, Tensor):
            raise ValueError(f"{name} must be a tensor, got {type(v).__name__}")
        if v.ndim != 4:
            raise ValueError(f"{name} must be images (N, C, H, W), got shape {tuple(v.shape)}")
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} vs {tuple(y.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError("x and y hold no images (N = 0)")
    if not data_range > 0 or not math.isfinite(data_range):
        raise ValueError(f"data_range must be a positive finite number, got {data_range}")
    x, y = x.detach().to(torch.float64), y.detach().to(torch.float64)
    for name, v in (("x", x), ("y", y)):
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    lo, hi = float(torch.minimum(x.min(), y.min())), float(torch.maximum(x.max(), y.max()))
    if hi - lo > data_range * (1 + 1e-6):
        raise ValueError(
            f"x and y span [{lo:.4g}, {hi:.4g}], wider than data_range={data_range}; pass images "
            "in [-1, 1] (clamp them) with data_range=2, or set data_range to their value range"
        )
    return x, y


def _region(mask: Tensor, shape: torch.Size, inside: bool) -> Tensor:
    """The float64 0/1 indicator ``(N, C, H, W)`` of the pixels a masked metric looks at."""
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask must be a tensor, got {type(mask).__name__}")
    m = mask.detach()
    if m.ndim == 2:
        m = m[None, None]
    if m.ndim != 4:
        raise ValueError(
            f"mask must be (H, W) or 4-D broadcastable to the images {tuple(shape)}, "
            f"got shape {tuple(mask.shape)}"
        )
    try:
        m = m.to(torch.float64).expand(shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the images {tuple(shape)}"
        ) from None
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("mask must be binary: every value 0 (background) or 1 (edited region)")
    region = m if inside else 1 - m
    empty = region.flatten(1).sum(1) == 0
    if bool(empty.any()):
        where = "inside" if inside else "outside"
        raise ValueError(
            f"the mask leaves no pixel {where} it for images {empty.nonzero().flatten().tolist()}"
        )
    return region


def mse(x: Tensor, y: Tensor, *, data_range: float = 2.0) -> Tensor:
    """Mean squared error per image ``(N,)`` of images ``x``, ``y`` ``(N, C, H, W)``."""
    x, y = _check_pair(x, y, data_range)
    return (x - y).square().flatten(1).mean(1)


def _psnr_from_mse(err: Tensor, data_range: float) -> Tensor:
    # MSE = 0 gives +inf (identical images): 10 log10(R² / 0).
    return 10 * torch.log10(data_range**2 / err)


def psnr(x: Tensor, y: Tensor, *, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio in dB per image ``(N,)``: ``10 log10(data_range² / MSE)``.

    Identical images have MSE = 0 and PSNR = ``inf``; average PSNRs with that in mind (e.g. use
    ``torch.isfinite`` or report the MSE).
    """
    return _psnr_from_mse(mse(x, y, data_range=data_range), data_range)


def _window(window: int, sigma: float | None) -> Tensor:
    """Normalised ``(window, window)`` weights: Gaussian with ``sigma``, or a box if ``None``."""
    if sigma is None:
        w1 = torch.ones(window, dtype=torch.float64)
    else:
        u = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
        w1 = torch.exp(-(u**2) / (2 * sigma**2))
    w1 = w1 / w1.sum()
    return w1[:, None] * w1[None, :]


def _resolve_window(window: int | None, sigma: float | None) -> int:
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma must be positive or None (uniform window), got {sigma}")
    if window is None:
        # skimage's choices: radius int(3.5σ + 0.5) for a Gaussian, 7 for a box.
        window = 7 if sigma is None else 2 * int(3.5 * sigma + 0.5) + 1
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd integer, got {window}")
    return window


def ssim_map(
    x: Tensor,
    y: Tensor,
    *,
    data_range: float = 2.0,
    sigma: float | None = 1.5,
    window: int | None = None,
) -> Tensor:
    """The SSIM map ``(N, C, H − w + 1, W − w + 1)`` over all window positions inside the image.

    Args:
        x, y: images ``(N, C, H, W)`` spanning at most ``data_range``.
        data_range: ``R`` in the stabilising constants ``c1 = (0.01R)², c2 = (0.03R)²``.
        sigma: Gaussian window standard deviation (weighted covariances), or ``None`` for a
            uniform window with sample covariances.
        window: window side ``w`` (odd); default 11 for ``sigma=1.5`` (``2⌊3.5σ + 0.5⌋ + 1``),
            7 for a uniform window.
    """
    x, y = _check_pair(x, y, data_range)
    w = _resolve_window(window, sigma)
    C, H, W = x.shape[1:]
    if min(H, W) < w:
        raise ValueError(f"images of size {H}x{W} are smaller than the SSIM window {w}x{w}")
    kernel = _window(w, sigma).expand(C, 1, w, w)

    def filt(v: Tensor) -> Tensor:
        return F.conv2d(v, kernel, groups=C)

    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x**2
    var_y = filt(y * y) - mu_y**2
    cov = filt(x * y) - mu_x * mu_y
    if sigma is None:  # sample covariance over the w² window pixels
        n = w * w
        var_x, var_y, cov = (v * n / (n - 1) for v in (var_x, var_y, cov))
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return num / den


def ssim(
    x: Tensor,
    y: Tensor,
    *,
    data_range: float = 2.0,
    sigma: float | None = 1.5,
    window: int | None = None,
) -> Tensor:
    """Structural similarity per image ``(N,)``: the mean of :func:`ssim_map` (same arguments).

    Identical images give exactly 1.
    """
    return ssim_map(x, y, data_range=data_range, sigma=sigma, window=window).flatten(1).mean(1)


def masked_mse(
    x: Tensor, y: Tensor, mask: Tensor, *, inside: bool = False, data_range: float = 2.0
) -> Tensor:
    """MSE per image ``(N,)`` over the pixels where ``mask == 0`` (``mask == 1`` if ``inside``).

    Args:
        x, y: images ``(N, C, H, W)``.
        mask: binary, ``(H, W)`` or 4-D broadcastable to ``x`` (e.g. ``(N, 1, H, W)``).
        inside: measure the masked (edited) region instead of the background.

    Raises:
        ValueError: if the mask is not binary or leaves an image with an empty region.
    """
    x, y = _check_pair(x, y, data_range)
    r = _region(mask, x.shape, inside)
    return ((x - y).square() * r).flatten(1).sum(1) / r.flatten(1).sum(1)


def masked_psnr(
    x: Tensor, y: Tensor, mask: Tensor, *, inside: bool = False, data_range: float = 2.0
) -> Tensor:
    """PSNR per image ``(N,)`` from :func:`masked_mse` (``inf`` where the region is unchanged)."""
    err = masked_mse(x, y, mask, inside=inside, data_range=data_range)
    return _psnr_from_mse(err, data_range)


def masked_ssim(
    x: Tensor,
    y: Tensor,
    mask: Tensor,
    *,
    inside: bool = False,
    data_range: float = 2.0,
    sigma: float | None = 1.5,
    window: int | None = None,
) -> Tensor:
    """SSIM per image ``(N,)`` over the region where ``mask == 0`` (``mask == 1`` if ``inside``).

    The :func:`ssim_map` is averaged over the window positions whose whole ``w × w`` window lies
    in the region (per channel), so no pixel outside the region affects the result.

    Raises:
        ValueError: if an image's region contains no full window (the region is too thin or small
            for the chosen window).
    """
    smap = ssim_map(x, y, data_range=data_range, sigma=sigma, window=window)
    w = _resolve_window(window, sigma)
    r = _region(mask, x.shape, inside)
    C = x.shape[1]
    ones = torch.ones(C, 1, w, w, dtype=torch.float64)
    full = (F.conv2d(r, ones, groups=C) > w * w - 0.5).to(torch.float64)
    count = full.flatten(1).sum(1)
    if bool((count == 0).any()):
        bad = (count == 0).nonzero().flatten().tolist()
        raise ValueError(
            f"no {w}x{w} SSIM window fits in the measured region of images {bad}; use a smaller "
            "window or masked_psnr"
        )
    return (smap * full).flatten(1).sum(1) / count
