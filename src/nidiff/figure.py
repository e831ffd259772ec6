"""Comparison figures: a grid of images with column and row labels, as one PNG (atomic write)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from torch import Tensor

from ._io import atomic_path
from .imageio import to_array

__all__ = ["labelled_grid"]


def labelled_grid(
    rows: Sequence[Sequence[Tensor]],
    columns: Sequence[str],
    row_labels: Sequence[str],
    path: str | os.PathLike,
    *,
    scale: int = 4,
    pad: int = 6,
) -> None:
    """Write ``rows`` of ``(C, H, W)`` images in [−1, 1] under ``columns`` headers."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    tiles = [[Image.fromarray(to_array(x)).convert("RGB") for x in row] for row in rows]
    h, w = tiles[0][0].height * scale, tiles[0][0].width * scale
    left = max(font.getbbox(s)[2] for s in row_labels) + 2 * pad
    top = 20
    canvas = Image.new(
        "RGB", (left + len(columns) * (w + pad) + pad, top + len(rows) * (h + pad)), "white"
    )
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(columns):
        draw.text((left + j * (w + pad), 4), name, fill="black", font=font)
    for i, row in enumerate(tiles):
        y = top + i * (h + pad)
        draw.text((pad, y + h // 2 - 6), row_labels[i], fill="black", font=font)
        for j, tile in enumerate(row):
            canvas.paste(tile.resize((w, h), Image.NEAREST), (left + j * (w + pad), y))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
