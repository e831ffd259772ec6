"""Reading and writing images: tensors in [−1, 1] ↔ PNG files (atomic writes)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from torch import Tensor

from ._io import atomic_path
from .data.transforms import to_uint8

__all__ = ["make_grid", "save_grid", "save_image", "to_array"]


def to_array(x: Tensor) -> np.ndarray:
    """``(C, H, W)`` in [−1, 1] → ``(H, W)`` or ``(H, W, 3)`` uint8 for Pillow (values clipped)."""
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"expected an image (1 or 3, H, W), got shape {tuple(x.shape)}")
    a = to_uint8(x.cpu()).numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def make_grid(images: Tensor, nrow: int | None = None, pad: int = 2, value: float = 1.0) -> Tensor:
    """Tile ``(N, C, H, W)`` images into one ``(C, H', W')`` image, ``nrow`` per row."""
    if images.ndim != 4:
        raise ValueError(f"expected (N, C, H, W), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = images.new_full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), value)
    for i in range(n):
        r, q = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[:, y : y + h, x : x + w] = images[i]
    return grid


def save_image(x: Tensor, path: str | os.PathLike, *, overwrite: bool = True) -> None:
    """Write one ``(C, H, W)`` image in [−1, 1] as PNG, atomically."""
    from PIL import Image

    with atomic_path(path, overwrite=overwrite) as tmp:
        Image.fromarray(to_array(x)).save(tmp, format="PNG")


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int | None = None, **kw) -> None:
    """Write ``(N, C, H, W)`` images as one PNG grid."""
    save_image(make_grid(images, nrow=nrow), Path(path), **kw)
