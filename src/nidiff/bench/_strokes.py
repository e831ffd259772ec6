r"""Stroke paintings by per-image k-means colour quantisation (EP paper, SDEdit experiment).

The EP paper converts images into "stroke paintings" with k-means clustering and feeds them to
SDEdit. Here, for each image independently:

1. optionally blur with a Gaussian of std ``blur`` pixels (:func:`nidiff.editing.gaussian_blur`,
   reflect padding) so that texture merges into flat regions (the paper does not state a
   pre-filter; ``blur = 0`` is k-means only);
2. cluster the pixels' colour vectors (grey levels for Fashion-MNIST) into ``k`` clusters with
   k-means: k-means++ seeding (Arthur & Vassilvitskii, 2007: first centre a uniformly drawn
   pixel, each next one drawn with probability ∝ squared distance to the nearest centre) from
   the given ``torch.Generator``, then Lloyd iterations (assign each pixel to its nearest centre,
   move each centre to the mean of its pixels; an empty cluster keeps its centre) until the
   assignment stops changing or ``iters`` rounds;
3. replace every pixel by its cluster's centre.

So each output image has at most ``k`` distinct colours, the same seed gives the same painting,
and an image with at most ``k`` colours (e.g. a constant one) is returned unchanged when
``blur = 0`` (a constant one also for any ``blur``). Computed in float64.

The SDEdit protocol around the paintings: :func:`balanced_indices` (the first ``n/10`` images of
each class), :func:`hijack_grid` (the reverse grid from the hijack time :math:`h\,T`) and
:func:`stroke_sdedit` (batched :func:`nidiff.editing.sdedit` with seeded noise).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nidiff.editing import gaussian_blur, sdedit
from nidiff.schedule import DiscreteSchedule, TimeGrid, custom_grid
from nidiff.training.checkpoint import LoadedModel

__all__ = [
    "balanced_indices",
    "hijack_grid",
    "kmeans_quantise",
    "stroke_painting",
    "stroke_sdedit",
]


def _sq_dist(v: Tensor, c: Tensor) -> Tensor:
    """Squared distances ``(N, P, k)`` of pixels ``v`` ``(N, P, C)`` to centres ``(N, k, C)``."""
    return ((v[:, :, None, :] - c[:, None, :, :]) ** 2).sum(-1)


def _kmeans_pp(v: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """k-means++ centres ``(N, k, C)``, one set per image (batched)."""
    N, P, _ = v.shape
    rows = torch.arange(N)
    first = torch.randint(P, (N,), generator=generator)
    centres = [v[rows, first]]
    d2 = ((v - centres[0][:, None]) ** 2).sum(-1)  # (N, P)
    for _ in range(1, k):
        w = torch.where(d2.sum(1, keepdim=True) > 0, d2, torch.ones_like(d2))
        nxt = torch.multinomial(w, 1, generator=generator).squeeze(1)
        centres.append(v[rows, nxt])
        d2 = torch.minimum(d2, ((v - centres[-1][:, None]) ** 2).sum(-1))
    return torch.stack(centres, 1)


def kmeans_quantise(
    x: Tensor, k: int, *, generator: torch.Generator | None = None, iters: int = 50
) -> Tensor:
    """Replace each pixel of each image ``x`` ``(N, C, H, W)`` by its k-means centre (see the
    module); returns a new tensor in ``x``'s dtype.

    Raises:
        ValueError: ``x`` not 4-d, ``k < 1`` or ``iters < 1``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be images (N, C, H, W), got shape {tuple(x.shape)}")
    if k < 1 or iters < 1:
        raise ValueError(f"k={k} and iters={iters} must be >= 1")
    N, C, H, W = x.shape
    v = x.detach().to(torch.float64).cpu().permute(0, 2, 3, 1).reshape(N, H * W, C)
    c = _kmeans_pp(v, k, generator)
    assign = _sq_dist(v, c).argmin(-1)
    for _ in range(iters):
        onehot = torch.nn.functional.one_hot(assign, k).to(v.dtype)  # (N, P, k)
        counts = onehot.sum(1)[..., None]  # (N, k, 1)
        sums = onehot.transpose(1, 2) @ v  # (N, k, C)
        c = torch.where(counts > 0, sums / counts.clamp_min(1), c)
        new = _sq_dist(v, c).argmin(-1)
        if bool((new == assign).all()):
            break
        assign = new
    out = c[torch.arange(N)[:, None], assign]  # (N, P, C)
    return out.reshape(N, H, W, C).permute(0, 3, 1, 2).to(dtype=x.dtype, device=x.device)


def stroke_painting(
    x: Tensor,
    k: int = 4,
    *,
    blur: float = 1.0,
    generator: torch.Generator | None = None,
    iters: int = 50,
) -> Tensor:
    """Stroke paintings of ``x`` ``(N, C, H, W)``: optional Gaussian pre-blur of std ``blur``,
    then :func:`kmeans_quantise` with ``k`` clusters per image. ``x`` is not modified."""
    y = x.detach().to(torch.float64)
    if blur > 0:
        y = gaussian_blur(y, blur)
    return kmeans_quantise(y, k, generator=generator, iters=iters).to(x.dtype)


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
    """SDEdit of paintings ``x`` with model ``m`` (a ``LoadedModel``) from ``hijack`` over
    ``grid``, conditioned on ``y``, η = 1 (the model's ancestral rule), no guidance; batch ``i``
    (from image ``i``) draws its noise from a generator seeded ``seed + i``. Clamped, on CPU."""
    out = []
    for i in range(0, len(x), batch):
        gen = torch.Generator(device).manual_seed(seed + i)
        with torch.no_grad():
            res = sdedit(
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
