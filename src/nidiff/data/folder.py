"""A folder of image files (PNG, JPEG, anything Pillow decodes) as a dataset (Pillow, lazily).

Every image is read by :func:`nidiff.imageio.open_image` (upright by its EXIF orientation,
flattened onto a uniform matte if it has transparency, grey or RGB in its own range), then
**centre-cropped to a square and resized** to ``size`` × ``size`` with bicubic resampling (the
largest centred square is kept, so nothing is stretched), and mapped to float32 ``[-1, 1]``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .transforms import from_uint8

__all__ = ["ImageFolder", "load_image"]


def _check_args(size: int, channels: int, matte: int) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels={channels} must be 1 (grey) or 3 (RGB)")
    if size <= 0:
        raise ValueError(f"size={size} must be a positive integer")
    if not 0 <= matte <= 255:
        raise ValueError(f"matte={matte} must be a grey level in 0..255")


def load_image(path: str | Path, size: int, channels: int = 1, matte: int = 0) -> Tensor:
    """Read one image file as float32 ``(channels, size, size)`` in ``[-1, 1]``.

    Every mode Pillow opens is read with its own range (:func:`nidiff.imageio.open_image`:
    16-bit grey as ``value / 65535``, palettes and CMYK converted, transparency flattened onto
    ``matte``); 8-bit sources are resampled as 8-bit images, deeper ones in float32.

    Args:
        path: the image file.
        size: output side length (centre crop to a square, then bicubic resize).
        channels: ``1`` for grey, ``3`` for RGB.
        matte: the grey level ``0..255`` that transparent pixels are flattened onto (``0`` is the
            black background of Fashion-MNIST).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not an image nidiff can read (undecodable, an unsupported
            mode, or more than :data:`nidiff.imageio.MAX_PIXELS` pixels), or for bad arguments.
    """
    from PIL import Image, ImageOps

    from ..imageio import open_image

    _check_args(size, channels, matte)
    img = ImageOps.fit(
        open_image(path, channels, matte), (size, size), method=Image.Resampling.BICUBIC
    )
    if img.mode == "F":  # deep grey in [0, 1]; bicubic may overshoot, so clip like uint8 does
        grey = torch.from_numpy(np.clip(np.asarray(img, dtype=np.float32), 0, 1) * 2 - 1)
        return grey.expand(channels, size, size).contiguous()
    arr = np.asarray(img, dtype=np.uint8).reshape(size, size, channels)
    return from_uint8(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())


class ImageFolder(Dataset):
    """The image files directly inside a folder (not sub-folders), as ``(image, 0)`` pairs.

    Files are taken in sorted name order; hidden files (names starting with ``.``) are ignored.
    Every file is checked when the dataset is built, so a stray non-image fails early.

    Args:
        root: the folder (or a single image file, giving a one-item dataset).
        size: output side length; images are centre-cropped to a square and resized.
        channels: ``1`` for grey, ``3`` for RGB.
        skip_invalid: if ``True``, files Pillow cannot decode are skipped with a warning instead
            of raising.
        matte: grey level ``0..255`` under transparent pixels (see :func:`load_image`).

    Raises:
        FileNotFoundError: if ``root`` does not exist.
        ValueError: a file that is not an image (naming it; unless ``skip_invalid``), or a folder
            with no images.
    """

    def __init__(
        self,
        root: str | Path,
        size: int,
        channels: int = 1,
        skip_invalid: bool = False,
        matte: int = 0,
    ):
        from ..imageio import image_size

        _check_args(size, channels, matte)
        root = Path(root)
        if root.is_file():
            candidates = [root]
        elif root.is_dir():
            candidates = sorted(p for p in root.iterdir() if p.is_file() and p.name[0] != ".")
        else:
            raise FileNotFoundError(f"image folder {root} does not exist")
        self.paths: list[Path] = []
        for path in candidates:
            try:
                image_size(path, verify=True)
            except ValueError as err:
                if not skip_invalid:
                    raise ValueError(f"{err}; pass skip_invalid=True to skip it") from err
                warnings.warn(f"skipping {err}", stacklevel=2)
                continue
            self.paths.append(path)
        if not self.paths:
            raise ValueError(f"no image files in {root}")
        self.size, self.channels, self.matte = size, channels, matte

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return load_image(self.paths[i], self.size, self.channels, self.matte), 0
