"""Pixel-range conversions and size fitting shared by the datasets.

Models see images as float32 in ``[-1, 1]`` (``-1`` black, ``+1`` white); files hold ``uint8`` in
``[0, 255]``. ``fit_size`` brings a stack of images to a square ``size`` either by centred padding
with the background value (Fashion-MNIST 28 → 32) or by resampling.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Fit", "fit_size", "from_uint8", "to_uint8"]

#: How :func:`fit_size` reaches the target size: ``"pad"`` (centred, never shrinks) or ``"resize"``.
Fit = Literal["pad", "resize"]


def from_uint8(x: Tensor) -> Tensor:
    """Map ``uint8`` pixels ``[0, 255]`` to float32 ``[-1, 1]`` (a new tensor)."""
    if x.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 tensor, got dtype {x.dtype}")
    return x.to(torch.float32) / 127.5 - 1.0


def to_uint8(x: Tensor) -> Tensor:
    """Map float images in ``[-1, 1]`` to ``uint8`` ``[0, 255]`` (clamped, rounded)."""
    return ((x.detach().to(torch.float32).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def fit_size(images: Tensor, size: int, fit: Fit = "pad", fill: float = -1.0) -> Tensor:
    """Bring images ``(..., H, W)`` to ``(..., size, size)``; returns a new tensor.

    Args:
        images: float images with at least two dims (the last two are height and width).
        size: the target side length.
        fit: ``"pad"`` centres the image on a ``size`` × ``size`` canvas filled with ``fill``
            (an odd margin puts the extra pixel right/bottom); ``"resize"`` resamples bilinearly
            (antialiased when shrinking), which changes the aspect ratio of non-square images.
        fill: the padding value; ``-1`` is the black background of Fashion-MNIST and digits.

    Raises:
        ValueError: for a non-positive ``size``, an unknown ``fit``, or ``"pad"`` to a size
            smaller than the image.
    """
    if size <= 0:
        raise ValueError(f"size={size} must be a positive integer")
    if images.ndim < 2:
        raise ValueError(f"images must have 2+ dims (..., H, W), got {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if h == w == size:
        return images.clone()
    if fit == "pad":
        if h > size or w > size:
            raise ValueError(
                f"cannot pad images of size {h}x{w} to the smaller size {size}; use fit='resize'"
            )
        top, left = (size - h) // 2, (size - w) // 2
        pad = (left, size - w - left, top, size - h - top)
        return F.pad(images, pad, mode="constant", value=fill)
    if fit == "resize":
        lead = images.shape[:-2]
        flat = images.reshape(-1, 1, h, w).to(torch.float32)
        shrink = size < h or size < w
        out = F.interpolate(
            flat, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
        )
        return out.reshape(*lead, size, size).to(images.dtype)
    raise ValueError(f"fit={fit!r} must be 'pad' or 'resize'")
