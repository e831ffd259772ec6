r"""The stroke SDEdit protocol of ``nidiff bench edge`` (EP paper, SDEdit experiment) around the
library's stroke editing (:mod:`nidiff.editing.strokes`: the k-means paintings and the edit, one
implementation): :func:`balanced_indices` (the first ``n/10`` images of each class),
:func:`hijack_grid` (the reverse grid from the hijack time :math:`h\,T`) and
:func:`stroke_sdedit` (batched :func:`~nidiff.editing.strokes.stroke_edit` with seeded noise).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nidiff.editing.strokes import kmeans_quantise, stroke_edit, stroke_painting
from nidiff.schedule import DiscreteSchedule, TimeGrid, custom_grid
from nidiff.training.checkpoint import LoadedModel

__all__ = [
    "balanced_indices",
    "hijack_grid",
    "kmeans_quantise",
    "stroke_painting",
    "stroke_sdedit",
]


def hijack_grid(schedule: DiscreteSchedule, hijack: float, edit_steps: int) -> TimeGrid:
    r"""SDEdit grid from :math:`t_h = \mathrm{round}(h T)`: :math:`n = \lceil h\cdot`
    ``edit_steps``:math:`\rceil` steps at :math:`t_i = \mathrm{round}(t_h (n-i)/n)`, then 0."""
    if not 0 < hijack <= 1:
        raise ValueError(f"hijack={hijack} must lie in (0, 1]")
    t_h = round(hijack * schedule.T)
    n = math.ceil(hijack * edit_steps)
    if not 1 <= n <= t_h:
        raise ValueError(f"edit_steps={edit_steps} gives {n} steps from t={t_h}")
    return custom_grid([round(t_h * (n - i) / n) for i in range(n)], schedule)


def balanced_indices(labels: Tensor, n: int) -> Tensor:
    """Indices of the first ``n / 10`` images of each class, sorted."""
    if n % 10 or n <= 0:
        raise ValueError(f"edits={n} must be a positive multiple of 10")
    idx = [(labels == c).nonzero().squeeze(1)[: n // 10] for c in range(10)]
    return torch.cat(idx).sort().values


def stroke_sdedit(
    m: LoadedModel,
    x: Tensor,
    y: Tensor,
    grid: TimeGrid,
    hijack: float,
    seed: int,
    device: str,
    batch: int,
) -> Tensor:
    """:func:`nidiff.editing.strokes.stroke_edit` of paintings ``x`` with model ``m`` (a
    ``LoadedModel``) from ``hijack`` over ``grid``, conditioned on ``y``, η = 1 (the model's
    ancestral rule), no guidance; batch ``i`` (from image ``i``) draws its noise from a generator
    seeded ``seed + i``. Clamped, on CPU."""
    out = []
    for i in range(0, len(x), batch):
        gen = torch.Generator(device).manual_seed(seed + i)
        with torch.no_grad():
            res = stroke_edit(
                m.denoiser,
                x[i : i + batch].to(device),
                m.process,
                grid,
                strength=hijack,
                cond=y[i : i + batch].to(device),
                eta=1.0,
                generator=gen,
            )
        out.append(res.x0.clamp(-1, 1).cpu())
    return torch.cat(out)
