r"""Stroke-guided editing (EP paper, SDEdit from stroke paintings): a painting — given, or made
from an image by k-means colour quantisation — noised part-way and denoised by the model.

**Paintings** (:func:`stroke_painting`), for each image independently:

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

So each painting has at most ``k`` distinct colours, the same seed gives the same painting, and
an image with at most ``k`` colours (e.g. a constant one) is returned unchanged when
``blur = 0`` (a constant one also for any ``blur``). Computed in float64.

**The edit** (:func:`stroke_edit`): SDEdit (:func:`nidiff.editing.sdedit`) of the painting with
the model's own forward process — :math:`x_{t_k} = \sqrt{\bar\alpha_{t_k}}\,p +
\sqrt{1-\bar\alpha_{t_k}}\,\Sigma^{1/2}z` for isotropic and GFF models, EP eq. 11 (the noise
scaled by the painting's own edges) for edge-preserving ones — then the reverse steps to clean
data under the target condition. The EP paper's claim is that edge-preserving noise keeps the
painting's shapes at a given hijack time while isotropic noise needs a later (noisier) start
to make the result realistic (``nidiff bench edge`` measures it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_image
from ..models.contract import Denoiser
from ..process import Process
from ..result import EditResult
from ..samplers.loop import StepRule
from ..schedule import TimeGrid
from .sdedit import sdedit
from .weighting import gaussian_blur

__all__ = ["kmeans_quantise", "stroke_edit", "stroke_painting"]


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


def stroke_edit(
    model: Denoiser,
    x: Tensor,
    process: Process,
    grid: TimeGrid,
    *,
    strength: float,
    clusters: int = 0,
    blur: float = 1.0,
    painting_seed: int = 0,
    cond: Any = None,
    guidance: float = 1.0,
    null_cond: Any = None,
    eta: float = 1.0,
    rule: StepRule | None = None,
    generator: torch.Generator | None = None,
) -> EditResult:
    r"""SDEdit from a stroke painting (see the module).

    Args:
        model: ``out = model(x_t, t, cond)``, isotropic, GFF or edge-preserving.
        x: the painting ``(B, C, H, W)`` in the model's space (``clusters = 0``), or the image
            to paint first (``clusters = k >= 1``: :func:`stroke_painting` with ``k`` colours,
            pre-blur ``blur``, k-means++ seeded ``painting_seed`` on the CPU); not modified.
        process, grid, strength, cond, guidance, null_cond, eta, rule, generator: as
            :func:`~nidiff.editing.sdedit` (``strength`` is the hijack time :math:`h`: the edit
            starts at the first grid time :math:`\le h\,t_{max}`).

    Returns:
        :class:`EditResult`: the edit ``x0`` and the ``painting`` it started from; ``info``
        holds SDEdit's record with ``method = "strokes"``, ``clusters``, ``blur`` and
        ``painting_seed`` (the last two ``None`` for a given painting).

    Raises:
        ValueError: ``clusters < 0``, ``blur < 0``, or any error of SDEdit.
    """
    check_image(x)
    if isinstance(clusters, bool) or int(clusters) != clusters or clusters < 0:
        raise ValueError(f"clusters={clusters!r} must be 0 (x is the painting) or a count >= 1")
    if not blur >= 0:
        raise ValueError(f"blur={blur!r} must be >= 0")
    painting = x
    if clusters:
        seeded = torch.Generator().manual_seed(int(painting_seed))
        painting = stroke_painting(x, int(clusters), blur=blur, generator=seeded)
    res = sdedit(
        model, painting, process, grid, strength=strength, cond=cond, guidance=guidance,
        null_cond=null_cond, eta=eta, rule=rule, generator=generator,
    )  # fmt: skip
    made = bool(clusters)
    info = res.info | {
        "method": "strokes",
        "clusters": int(clusters),
        "blur": float(blur) if made else None,
        "painting_seed": int(painting_seed) if made else None,
    }
    return EditResult(x0=res.x0, nfe=res.nfe, info=info, painting=painting)
