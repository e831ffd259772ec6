r"""Manipulations in the edit-friendly noise space (EF Sec. 5): shift, flip, colour edits.

Shifting or flipping *all* maps of the latent code :math:`\{x_T, z_T, \dots, z_1\}` shifts or
flips the regenerated image (EF Fig. 7, 13). The functions take any list of maps, so pass the
whole code and regenerate with both parts::

    maps = shift_maps([inv.x_T, *inv.zs], dx=4)
    out = edit_friendly_regenerate(model, inv, process, x_T=maps[0], zs=maps[1:])

For a translation-equivariant model (stationary data, cyclic boundary) the ``"wrap"`` shift gives
exactly the cyclically shifted image. Colour edits (EF eq. 7) modify the maps *during*
regeneration, since they depend on each step's :math:`\hat x_0`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from .._checks import broadcast_shape, check_in_range
from ..models.contract import Denoiser
from ..process import Process
from ..result import EditResult
from ..samplers.transition import Transition
from .edit_friendly import edit_friendly_regenerate
from .io import Inversion

__all__ = ["color_edit", "flip_maps", "shift_maps"]

FILLS = ("wrap", "band")


def shift_maps(
    maps: Sequence[Tensor],
    dx: int = 0,
    dy: int = 0,
    *,
    fill: str = "wrap",
    band_start: int | None = None,
) -> list[Tensor]:
    """Shift every map ``(..., H, W)`` by ``dx`` columns right and ``dy`` rows down (negative:
    left/up); new tensors, inputs untouched.

    The shift uncovers a band of ``|dx|`` columns (``|dy|`` rows) at the border. Both fills copy
    genuine entries of the same map, so a white map stays :math:`\\mathcal N(0, 1)` per entry:

    * ``"wrap"`` (default): a cyclic shift: the band gets the entries pushed off the opposite
      edge. The result is a permutation of the map, so a white map stays exactly white (no entry
      is duplicated), and a cyclically equivariant model shifts its output exactly.
    * ``"band"``: EF App. A: the band gets a copy of the contiguous columns (rows)
      ``band_start … band_start + d - 1`` of the original map. Default ``band_start``: the
      paper's 50 when the band fits, else the centred band ``(W - d) // 2``. Copied entries
      repeat entries of the shifted map (the paper found this better than fresh noise).

    Columns are shifted first, then rows (for ``"band"``, the row band is copied from the
    column-shifted map).
    """
    if fill not in FILLS:
        raise ValueError(f"fill={fill!r} must be one of {FILLS}")
    out = []
    for k, z in enumerate(maps):
        if not isinstance(z, Tensor) or z.ndim < 2:
            raise ValueError(f"maps[{k}] must be a tensor (..., H, W)")
        for d, dim, name in ((dx, -1, "dx"), (dy, -2, "dy")):
            z = _shift(z, d, dim, name, fill, band_start)
        out.append(z)
    return out


def _shift(z: Tensor, d: int, dim: int, name: str, fill: str, start: int | None) -> Tensor:
    size = z.shape[dim]
    if isinstance(d, bool) or int(d) != d or abs(d) >= size:
        raise ValueError(f"{name}={d!r} must be an integer with |{name}| < {size}")
    d = int(d)
    rolled = z.roll(d, dims=dim)
    if fill == "wrap" or d == 0:
        return rolled
    w = abs(d)
    s = (50 if 50 + w <= size else (size - w) // 2) if start is None else start
    if isinstance(s, bool) or int(s) != s or not 0 <= s <= size - w:
        raise ValueError(f"band_start={s!r} must be an integer in [0, {size - w}] for {name}={d}")
    band, kept = z.narrow(dim, int(s), w), rolled.narrow(dim, w if d > 0 else 0, size - w)
    return torch.cat([band, kept] if d > 0 else [kept, band], dim=dim)


def flip_maps(maps: Sequence[Tensor], dims: Sequence[int] = (-1,)) -> list[Tensor]:
    """Flip every map along ``dims`` (default the last, a horizontal flip); new tensors."""
    dims = tuple(dims)
    out = []
    for k, z in enumerate(maps):
        if not isinstance(z, Tensor) or not all(-z.ndim <= d < z.ndim for d in dims):
            raise ValueError(f"maps[{k}] has no dims {dims}")
        out.append(z.flip(dims))
    return out


def color_edit(
    model: Denoiser,
    inversion: Inversion,
    process: Process,
    *,
    mask: Tensor,
    color: Tensor,
    strength: float = 0.05,
    window: tuple[int, int] | None = None,
    cond: Any = None,
    guidance: float | None = None,
    null_cond: Any = None,
    skip: int = 0,
) -> EditResult:
    r"""Colour edit by the noise maps (EF eq. 7): in the window, every step's map becomes

    .. math:: z_t^{edited} = z_t + s\,B\odot(M - \hat x_0^{(t)}),

    with :math:`\hat x_0^{(t)}` the current step's clean estimate, then the regeneration goes on
    (the correction is white-space, coloured by :math:`\sigma_t\Sigma^{1/2}` like the map).

    Args:
        mask: :math:`B`, in ``[0, 1]`` (bool allowed), broadcastable to ``x_T`` (e.g.
            ``(B, 1, H, W)``).
        color: :math:`M`, the desired colours, broadcastable to ``x_T``.
        strength: :math:`s \ge 0` (paper: 0.05 with 100 steps).
        window: ``(T1, T2)`` in EF's step numbers, ``1 <= T1 <= T2 <= N``: step number ``N`` is
            the noisiest (grid index 0), ``1`` the last; steps numbered ``T2`` down to ``T1`` are
            edited. Default: the paper's ``(20, 70)`` of 100 scaled to ``N``,
            ``(max(1, round(0.2 N)), round(0.7 N))``.
        cond, guidance, null_cond, skip: as for :func:`~.edit_friendly.edit_friendly_regenerate`.
    """
    n = inversion.steps
    T1, T2 = (max(1, round(0.2 * n)), max(1, round(0.7 * n))) if window is None else window
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (T1, T2)) or not (
        1 <= T1 <= T2 <= n
    ):
        raise ValueError(f"window=({T1!r}, {T2!r}) must be integers with 1 <= T1 <= T2 <= N={n}")
    check_in_range(strength, "strength", 0.0, math.inf)
    x_T = inversion.x_T
    for name, v in (("mask", mask), ("color", color)):
        if not isinstance(v, Tensor) or broadcast_shape(v, x_T, name, "x_T") != x_T.shape:
            raise ValueError(f"{name} must be a tensor broadcastable to x_T {tuple(x_T.shape)}")
    if mask.is_complex():
        raise ValueError("mask must be real, in [0, 1]")
    check_in_range(mask.double(), "mask", 0.0, 1.0)
    B = mask.to(device=x_T.device, dtype=x_T.dtype)
    M = color.to(device=x_T.device, dtype=x_T.dtype)

    def hook(i: int, tr: Transition, z: Tensor) -> Tensor:
        return z + strength * B * (M - tr.x0_hat) if T1 <= n - i <= T2 else z

    res = edit_friendly_regenerate(
        model,
        inversion,
        process,
        cond=cond,
        guidance=guidance,
        null_cond=null_cond,
        skip=skip,
        z_hook=hook,
    )
    info = res.info | {"method": "ef_color", "strength": float(strength), "window": [T1, T2]}
    return replace(res, info=info)
