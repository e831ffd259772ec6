"""Reading and writing image files: the one place nidiff opens an image, and atomic writes.

Reading (:func:`open_image`, :func:`image_size`) turns every image mode Pillow opens into grey
or RGB with the right range, and refuses the rest with a message instead of guessing:

* 8-bit modes (``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``, ``HSV``, ...): Pillow's
  conversion (``CMYK`` through RGB);
* transparency (``LA``, ``RGBA``, ``PA``, palettes with a transparent colour): flattened onto a
  uniform ``matte`` grey, so what is behind transparent pixels never shows;
* 16-bit grey (``I;16``, ``I;16B``, ...) and 32-bit integer ``I``: ``value / 65535`` (``I``
  must hold 0..65535, the range Pillow gives 16-bit data); 32-bit float ``F``: ``0..1``;
  these keep their precision (resampled in float32). Pillow itself opens 16-bit RGB(A) PNGs as
  8-bit ``RGB``/``RGBA`` (the high byte), which is then read as above;
* any other mode (e.g. ``LAB``, which Pillow cannot convert to RGB), files Pillow cannot
  decode and images of more than :data:`MAX_PIXELS` pixels (checked from the header, before
  decoding: decompression bombs) raise ``ValueError`` naming the file.

Writing (:func:`save_image`) picks the format from the extension (:data:`OUTPUT_FORMATS`).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ._io import atomic_path
from .data.transforms import to_uint8

__all__ = [
    "MAX_PIXELS",
    "OUTPUT_FORMATS",
    "image_size",
    "make_grid",
    "open_image",
    "output_format",
    "save_array",
    "save_grid",
    "save_image",
    "to_array",
]

#: The most pixels nidiff decodes from one file (8192 × 8192); below Pillow's own bomb warning.
MAX_PIXELS = 8192 * 8192
#: Image formats written by file extension (WebP where Pillow was built with it).
OUTPUT_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}
_TRANSPARENT = {"RGBA", "LA", "PA", "RGBa"}
#: 8-bit modes Pillow truly converts to grey and RGB (its LAB → RGB, e.g., copies the bytes).
_CONVERTIBLE = {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "HSV"} | _TRANSPARENT


def _too_large(path: Path, pixels: int | None, size: tuple[int, int] | None = None) -> ValueError:
    shape = f"{size[0]}×{size[1]} = " if size else ""
    claims = f"claims {shape}{pixels:,} pixels" if pixels else "claims too many pixels"
    return ValueError(
        f"{path} {claims}; nidiff reads images of at most {MAX_PIXELS:,} pixels (8192×8192): "
        "scale it down first"
    )


@contextlib.contextmanager
def _opened(path: str | os.PathLike) -> Iterator[Any]:
    """Pillow's lazily opened image, its declared size checked against :data:`MAX_PIXELS`
    before anything is decoded; any decoding failure inside is a ``ValueError``."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        raise _too_large(path, int(found[1]) if found else None) from None
    except Exception as err:  # Pillow raises many types for a bad file; none is ours
        raise ValueError(f"{path} is not a readable image file ({err})") from None
    with img:
        if img.width * img.height > MAX_PIXELS:
            raise _too_large(path, img.width * img.height, img.size)
        try:
            yield img
        except ValueError:
            raise
        except Exception as err:
            raise ValueError(f"{path} is not a readable image file ({err})") from None


def image_size(path: str | os.PathLike, *, verify: bool = False) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header (``verify``: also check the file's
    structure, e.g. PNG checksums, without decoding the pixels).

    Raises:
        FileNotFoundError: no such file. ValueError: not an image, or too large to read.
    """
    with _opened(path) as img:
        if verify:
            img.verify()
        return img.size


def open_image(path: str | os.PathLike, channels: int = 1, matte: int = 0) -> Any:
    """Decode an image file, upright (EXIF orientation), as a Pillow image of mode ``"L"``
    (``channels=1``) or ``"RGB"`` (``channels=3``) for 8-bit sources, or ``"F"`` (grey, values
    in ``[0, 1]``) for 16- and 32-bit grey sources; see the module doc for every mode.

    Args:
        matte: the grey level ``0..255`` transparent pixels are flattened onto.

    Raises:
        FileNotFoundError: no such file. ValueError: not an image, too large, or a mode nidiff
            cannot read (the message names the file and the mode).
    """
    from PIL import Image, ImageOps

    if channels not in (1, 3):
        raise ValueError(f"channels={channels} must be 1 (grey) or 3 (RGB)")
    with _opened(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        return Image.fromarray(_unit_range(path, mode, np.asarray(img, dtype=np.float64)), "F")
    if mode not in _CONVERTIBLE:
        raise ValueError(
            f"{path} has image mode {mode}, which nidiff cannot read; save it as 8- or 16-bit "
            "grey, RGB, RGBA, CMYK or a palette image"
        )
    target = "L" if channels == 1 else "RGB"
    try:
        if mode in _TRANSPARENT or (mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (matte, matte, matte, 255))
            img = Image.alpha_composite(canvas, rgba)
        elif mode == "CMYK":
            img = img.convert("RGB")
        return img.convert(target)
    except (ValueError, OSError) as err:  # e.g. a palette that does not decode
        raise ValueError(f"{path} is not a readable image file ({err})") from None


def _unit_range(path: str | os.PathLike, mode: str, a: np.ndarray) -> np.ndarray:
    """A deep grey image's values as float32 in ``[0, 1]`` (see the module doc)."""
    scale = 1.0 if mode == "F" else 65535.0  # F: 0..1; else 16-bit grey (or I holding it)
    finite = bool(np.isfinite(a).all())
    if not finite or (a.size and (a.min() < -1e-6 * scale or a.max() > (1 + 1e-6) * scale)):
        found = "non-finite values" if not finite else f"values {a.min():g}..{a.max():g}"
        raise ValueError(
            f"{path} is a mode {mode} image with {found}; nidiff reads mode {mode} as 0..{scale:g}"
        )
    return np.clip(a / scale, 0.0, 1.0).astype(np.float32)


def output_format(path: str | os.PathLike) -> str:
    """Pillow's format name for an output file's extension (:data:`OUTPUT_FORMATS`).

    Raises:
        ValueError: for an extension nidiff does not write, listing those it does.
    """
    from PIL import features

    suffix = Path(path).suffix.lower()
    known = {s: f for s, f in OUTPUT_FORMATS.items() if f != "WEBP" or features.check("webp")}
    if suffix not in known:
        raise ValueError(
            f"{path}: cannot tell the image format from {suffix or 'no extension'!r}; use "
            f"{', '.join(known)}"
        )
    return known[suffix]


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
    """Write one ``(C, H, W)`` image in [−1, 1] atomically, in the format ``path``'s extension
    names (PNG, JPEG at quality 95, lossless WebP, BMP, TIFF; :func:`output_format`)."""
    from PIL import Image

    fmt = output_format(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        Image.fromarray(to_array(x)).save(tmp, format=fmt, **_SAVE_OPTIONS.get(fmt, {}))


def save_array(a: np.ndarray, path: str | os.PathLike, *, overwrite: bool = True) -> None:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` array atomically, in the format ``path``'s
    extension names (as :func:`save_image`)."""
    from PIL import Image

    if a.dtype != np.uint8 or a.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, 3) array, got {a.dtype} {a.shape}")
    fmt = output_format(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        Image.fromarray(a).save(tmp, format=fmt, **_SAVE_OPTIONS.get(fmt, {}))


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int | None = None, **kw) -> None:
    """Write ``(N, C, H, W)`` images as one grid image (format from the extension)."""
    save_image(make_grid(images, nrow=nrow), Path(path), **kw)
