r"""Pictures in the page and the change map, between tensors and what the browser shows.

**Display.** A 28×28 image is a thumbnail on a screen, so images are shown enlarged by
``scale`` (:func:`view_scale`: ×10 for the bundled models, ×1 from 280 pixels up) with nearest
neighbours, every model pixel a visible square. Downloads keep the model's own resolution.

**The change map** is NGDM's :math:`\lambda` at the model's grid (the image for pixel models,
the latents for Stable Diffusion: ``size/factor`` on a side). In the editor it is a red layer
over the image whose opacity is :math:`\lambda` (one grid cell = a ``block × block`` square), so
the brush (opaque) paints :math:`\lambda = 1`, "change", and the eraser paints
:math:`\lambda = 0`, "keep"; reading it back averages the opacity over each square. As a file it
follows ``nidiff edit --save-map`` and ``--map``: a grey PNG, white = :math:`\lambda = 1`, at the
grid's size when saved, resized to the grid when read (:func:`nidiff.app.inputs.read_map`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "MAP_COLOR",
    "editor_value",
    "enlarge",
    "grid_shape",
    "lam_from_layer",
    "layer_from_lam",
    "save_map",
    "view_scale",
]

#: The map layer's colour (its opacity is λ).
MAP_COLOR = (255, 32, 32)
#: Images are enlarged to at least this many pixels on a side for display.
VIEW_SIDE = 280


def view_scale(size: int) -> int:
    """How much to enlarge an image of side ``size`` for display."""
    return max(1, VIEW_SIDE // size)


def grid_shape(m: Any) -> tuple[int, int]:
    """The ``(h, w)`` of a model's change map (``size / factor`` on a side)."""
    side = m.size // m.factor
    return side, side


def enlarge(x: Tensor, scale: int) -> np.ndarray:
    """An image ``(C, H, W)`` in ``[-1, 1]`` as RGB ``uint8`` ``(H·scale, W·scale, 3)``."""
    from ..imageio import to_array

    a = to_array(x.detach().float().clamp(-1, 1).cpu())
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.repeat(np.repeat(a, scale, axis=0), scale, axis=1)


def layer_from_lam(lam: Tensor, side: int) -> np.ndarray:
    """λ ``(1, 1, h, w)`` as the editor's RGBA layer ``(side, side, 4)``: :data:`MAP_COLOR`
    with opacity λ, each grid cell a ``side/h`` square."""
    a = lam.detach().float().cpu()[0, 0].clamp(0, 1).numpy()
    block = side // a.shape[0]
    alpha = np.repeat(np.repeat(np.round(a * 255).astype(np.uint8), block, 0), block, 1)
    rgba = np.zeros((*alpha.shape, 4), np.uint8)
    rgba[..., :3] = MAP_COLOR
    rgba[..., 3] = alpha
    return rgba


def lam_from_layer(layer: Any, grid: tuple[int, int]) -> Tensor | None:
    """The λ ``(1, 1, h, w)`` painted in an editor layer (RGBA array, opacity averaged over
    each grid cell), or ``None`` for a fully transparent layer (no map painted).

    Raises:
        ValueError: a layer that is not an image whose sides are multiples of the grid's.
    """
    a = np.asarray(layer)
    h, w = grid
    if a.ndim != 3 or a.shape[0] % h or a.shape[1] % w or a.shape[0] // h != a.shape[1] // w:
        got = "×".join(str(s) for s in a.shape[1::-1]) if a.ndim >= 2 else "not an image"
        raise ValueError(
            f"the painted map is {got}; it must cover the image, a multiple of the model's "
            f"{w}×{h} grid"
        )
    alpha = a[..., 3] if a.shape[2] == 4 else np.full(a.shape[:2], 255, np.uint8)
    if not alpha.any():
        return None
    b = a.shape[0] // h
    cells = alpha.astype(np.float32).reshape(h, b, w, b).mean(axis=(1, 3)) / 255.0
    return torch.from_numpy(cells)[None, None]


def editor_value(background: np.ndarray, lam: Tensor | None = None) -> dict[str, Any]:
    """The editor's value: the image, and the map as its one layer when there is one."""
    layers = [] if lam is None else [layer_from_lam(lam, background.shape[0])]
    return {"background": background, "layers": layers, "composite": None}


def save_map(lam: Tensor, path: Path) -> Path:
    """Write λ ``(1, 1, h, w)`` as ``nidiff edit --save-map`` does (grey PNG, white = 1)."""
    from ..imageio import save_image

    save_image(lam[0][:1].detach().float().cpu() * 2 - 1, path)
    return path
