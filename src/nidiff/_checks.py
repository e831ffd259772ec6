"""Shape and value checks shared by the whole package.

Every public function validates its inputs here, so errors read the same everywhere and name the
offending parameter. Nothing in this module mutates a tensor it is given.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "as_time",
    "check_finite",
    "check_in_range",
    "expand_like",
]


def as_time(t: float | Tensor, *, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """Convert a time (Python number or tensor) to a floating tensor without copying needlessly."""
    if isinstance(t, Tensor):
        if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.int16)):
            raise ValueError(f"t must be a real tensor, got dtype {t.dtype}")
        return t.to(dtype=dtype, device=device if device is not None else t.device)
    return torch.as_tensor(float(t), dtype=dtype, device=device)


def expand_like(v: Tensor, x: Tensor, name: str = "t") -> Tensor:
    """Return ``v`` viewed so that it broadcasts against ``x`` of shape ``(B, *dims)``.

    The time contract of nidiff: ``v`` is a scalar ``()``, one value per batch element ``(B,)``,
    or a per-element tensor with ``x.ndim`` dimensions that broadcasts to ``x.shape`` (e.g. a
    per-pixel map ``(B, 1, H, W)``). A ``(B,)`` tensor is reshaped to ``(B, 1, ..., 1)``.

    Raises:
        ValueError: if ``v`` fits none of these shapes.
    """
    if v.ndim == 0:
        return v
    if v.ndim == 1 and x.ndim >= 1 and v.shape[0] == x.shape[0] and x.ndim > 1:
        return v.reshape(v.shape[0], *([1] * (x.ndim - 1)))
    if v.ndim == x.ndim:
        try:
            shape = torch.broadcast_shapes(v.shape, x.shape)
        except RuntimeError:
            shape = None
        if shape == x.shape:
            return v
    if x.ndim == 1 and v.ndim == 1 and v.shape[0] in (1, x.shape[0]):
        return v
    raise ValueError(
        f"{name} of shape {tuple(v.shape)} does not fit x of shape {tuple(x.shape)}: expected a "
        f"scalar, ({x.shape[0]},) or a {x.ndim}-d tensor broadcastable to {tuple(x.shape)}"
    )


def check_finite(x: Tensor, name: str) -> Tensor:
    """Raise ``ValueError`` if ``x`` holds NaN or infinity; return ``x`` unchanged."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return x


def check_in_range(
    x: float | Tensor, name: str, low: float, high: float, *, low_open: bool = False
) -> None:
    """Raise ``ValueError`` unless every value of ``x`` lies in ``[low, high]`` (or ``(low, high]``)."""
    xt = torch.as_tensor(x)
    if xt.numel() == 0:
        return
    if not bool(torch.isfinite(xt).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    lo, hi = float(xt.min()), float(xt.max())
    bad_low = lo <= low if low_open else lo < low
    if bad_low or hi > high:
        bracket = "(" if low_open else "["
        shown = lo if bad_low else hi
        raise ValueError(f"{name}={shown:g} is outside the allowed range {bracket}{low:g}, {high:g}]")
