"""Comparison figures: a grid of images with column and row labels, as one PNG (atomic write).

Optionally a ``title`` above the grid, a caption under every tile (e.g. the classifier's
probability of the target class) and one column of maps in ``[0, 1]`` drawn in a colour scale
(:func:`colormap`) with its colour bar at the right.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from torch import Tensor

from ._io import atomic_path
from .imageio import to_array

__all__ = ["COLORMAP_STOPS", "colormap", "labelled_grid"]

#: The colour scale of maps: RGB stops at 0, 0.25, 0.5, 0.75, 1, linearly interpolated
#: (viridis' stops: dark blue → teal → green → yellow; monotone in lightness).
COLORMAP_STOPS = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64
)


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in ``[0, 1]`` (any shape ``S``, clipped) → uint8 RGB ``(*S, 3)`` on
    :data:`COLORMAP_STOPS`."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * (len(COLORMAP_STOPS) - 1)
    lo = np.minimum(np.floor(v).astype(int), len(COLORMAP_STOPS) - 2)
    w = (v - lo)[..., None]
    rgb = (1 - w) * COLORMAP_STOPS[lo] + w * COLORMAP_STOPS[lo + 1]
    return np.round(rgb).astype(np.uint8)


def labelled_grid(
    rows: Sequence[Sequence[Tensor]],
    columns: Sequence[str],
    row_labels: Sequence[str],
    path: str | os.PathLike,
    *,
    scale: int = 4,
    pad: int = 6,
    title: str | None = None,
    captions: Sequence[Sequence[str]] | None = None,
    map_column: int | None = None,
    map_label: str = "lambda",
) -> None:
    """Write ``rows`` of ``(C, H, W)`` images in [−1, 1] under ``columns`` headers.

    ``title``: one line above the headers. ``captions[i][j]``: a line under tile ``(i, j)``
    (``""`` for none). ``map_column``: that column holds maps in ``[0, 1]`` (channel 0 of
    ``(1, H, W)`` tensors), drawn in :func:`colormap` with a colour bar labelled
    ``map_label`` at 0, 0.5 and 1 right of the grid.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    line = font.getbbox("Ag")[3] + 4  # one text line's height

    def tile(x: Tensor, j: int) -> Image.Image:
        if j == map_column:
            return Image.fromarray(colormap(x[0].detach().float().cpu().numpy()))
        return Image.fromarray(to_array(x)).convert("RGB")

    tiles = [[tile(x, j) for j, x in enumerate(row)] for row in rows]
    h, w = tiles[0][0].height * scale, tiles[0][0].width * scale
    left = max(font.getbbox(s)[2] for s in row_labels) + 2 * pad
    top = (line + pad if title else 0) + 20
    below = line if captions is not None else 0  # caption line under each tile
    bar = 0 if map_column is None else 3 * pad + 12 + font.getbbox("0.5")[2] + pad
    width = left + len(columns) * (w + pad) + pad + bar
    canvas = Image.new("RGB", (width, top + len(rows) * (h + below + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad), title, fill="black", font=font)
    for j, name in enumerate(columns):
        draw.text((left + j * (w + pad), top - 16), name, fill="black", font=font)
    for i, row in enumerate(tiles):
        y = top + i * (h + below + pad)
        draw.text((pad, y + h // 2 - 6), row_labels[i], fill="black", font=font)
        for j, im in enumerate(row):
            x = left + j * (w + pad)
            canvas.paste(im.resize((w, h), Image.NEAREST), (x, y))
            if captions is not None and captions[i][j]:
                draw.text((x, y + h + 1), captions[i][j], fill="black", font=font)
    if map_column is not None:
        _colour_bar(canvas, draw, font, (left + len(columns) * (w + pad) + 2 * pad, top),
                    len(rows) * (h + below + pad) - pad, map_label)  # fmt: skip
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")


def _colour_bar(canvas, draw, font, at: tuple[int, int], height: int, label: str) -> None:
    """A vertical colour bar (1 at the top) of ``height`` px at ``at``, ticks 0, 0.5, 1."""
    from PIL import Image

    x, y = at
    inner = height - 2 * 8  # room for the label above
    grad = colormap(np.linspace(1.0, 0.0, inner))[:, None, :].repeat(12, axis=1)
    canvas.paste(Image.fromarray(grad), (x, y + 16))
    draw.text((x, y), label, fill="black", font=font)
    for v in (1.0, 0.5, 0.0):
        ty = y + 16 + round((1 - v) * (inner - 1))
        draw.line([(x + 12, ty), (x + 15, ty)], fill="black")
        draw.text((x + 17, ty - 5), f"{v:g}", fill="black", font=font)
