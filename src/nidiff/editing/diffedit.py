r"""DiffEdit (Couairon et al., ICLR 2023): a mask from disagreeing predictions, then masked DDIM.

**Mask** (DiffEdit Sec. 3.1, step 1). Noise the source :math:`n` times to
:math:`s = \text{strength}\cdot t_{max}` and compare the source- and target-conditioned noise
predictions, averaged over draws and channels; clamp at ``clamp`` times the per-image mean,
min-max normalise per image and binarise:

.. math::
    D = \frac1n\sum_j \operatorname{mean}_c\bigl|\hat\varepsilon(x_s^{(j)}, s, Q)
        - \hat\varepsilon(x_s^{(j)}, s, R)\bigr|, \qquad
    M = \mathbb 1\bigl[\operatorname{minmax}(\min(D, c\,\bar D)) \ge \text{threshold}\bigr].

This is NGDM's weighting map without smoothing, so :func:`diffedit_mask` is built on
:func:`~nidiff.editing.weighting.weighting_map` (``sigma=0``), which compares the predictions as
coloured noise :math:`\Sigma^{1/2}\hat\varepsilon` (identical to DiffEdit's for isotropic models).

**Edit** (steps 2–3). DDIM-invert the source with the source condition up to the start time
:math:`t_k` (the first grid time :math:`\le r\,t_{max}` for the encoding ratio :math:`r`;
:func:`~nidiff.editing.sdedit.start_index`), recording the states :math:`x^{inv}_t`. Decode
with DDIM (:math:`\eta = 0`) and the target condition, and after every step to
:math:`t_{prev}` keep the inversion outside the mask:

.. math:: x_{t_{prev}} \leftarrow M\odot x_{t_{prev}} + (1-M)\odot x^{inv}_{t_{prev}} .

The last state is :math:`x^{inv}_0 = x_0`, so pixels outside the mask come back exactly.
Edge-preserving processes have no DDIM inversion and are rejected.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_fixed_noise, check_image, check_in_range
from ..inversion.ddim import ddim_invert
from ..models.contract import Denoiser, with_guidance
from ..process import Process
from ..result import EditResult
from ..samplers import StepInfo, sample
from ..schedule import TimeGrid
from .sdedit import start_index
from .weighting import weighting_map

__all__ = ["diffedit", "diffedit_mask"]


def _mask(
    model: Denoiser, x0: Tensor, process: Process, threshold: float, **kw: Any
) -> tuple[Tensor, int]:
    """The binary mask and the model calls it took (``kw``: :func:`weighting_map`'s)."""
    check_in_range(threshold, "threshold", 0.0, 1.0)
    wm = weighting_map(model, x0, process, sigma=0.0, **kw)
    return wm.A.ge(threshold).to(x0.dtype), wm.nfe


def diffedit_mask(
    model: Denoiser,
    x0: Tensor,
    process: Process,
    *,
    source_cond: Any,
    target_cond: Any,
    strength: float = 0.5,
    n: int = 10,
    threshold: float = 0.5,
    clamp: float | None = 3.0,
    guidance: float = 1.0,
    null_cond: Any = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""DiffEdit's binary edit mask ``(B, 1, *spatial)`` (0/1 in ``x0``'s dtype; module docs).

    Args:
        model: ``out = model(x_t, t, cond)``.
        x0: source images ``(B, C, *spatial)``; not modified.
        process: the model's process.
        source_cond, target_cond: :math:`R` (describes ``x0``) and :math:`Q` (the edit).
        strength: noise level as a fraction of ``t_max`` in ``(0, 1]`` (DiffEdit: 0.5; rounded
            to an integer step on discrete schedules).
        n: noise draws, ``>= 1`` (DiffEdit: 10).
        threshold: binarisation level in ``[0, 1]`` (DiffEdit: 0.5).
        clamp: clamp at ``clamp`` × mean before normalising (``> 0``; ``None``: no clamp).
        guidance, null_cond: classifier-free guidance of both predictions.
        generator: source of the ``n`` white draws.
    """
    return _mask(
        model, x0, process, threshold, source_cond=source_cond, target_cond=target_cond,
        strength=strength, n=n, clamp=clamp, guidance=guidance, null_cond=null_cond,
        generator=generator,
    )[0]  # fmt: skip


def diffedit(
    model: Denoiser,
    x0: Tensor,
    process: Process,
    grid: TimeGrid,
    *,
    source_cond: Any,
    target_cond: Any,
    mask: Tensor | None = None,
    strength: float = 0.5,
    guidance: float = 1.0,
    null_cond: Any = None,
    mask_strength: float = 0.5,
    mask_n: int = 10,
    mask_threshold: float = 0.5,
    mask_clamp: float | None = 3.0,
    generator: torch.Generator | None = None,
) -> EditResult:
    r"""DiffEdit of ``x0`` from ``source_cond`` to ``target_cond`` (module docs).

    Args:
        model: ``out = model(x_t, t, cond)``, white :math:`\hat\varepsilon`.
        x0: source images ``(B, C, *spatial)``; not modified.
        process: an isotropic, diagonal or GFF process (edge-preserving raises).
        grid: the full DDIM grid; the edit runs ``grid[k:]`` (:func:`start_index`).
        source_cond, target_cond: the conditions :math:`R` and :math:`Q`.
        mask: values in ``[0, 1]`` broadcastable to ``x0`` (1 = edit); computed with
            :func:`diffedit_mask` and the ``mask_*`` arguments if ``None``.
        strength: the encoding ratio :math:`r \in (0, 1]`.
        guidance, null_cond: classifier-free guidance for the mask and the decoding; the
            inversion is unguided (guidance 1, the source condition), as DDIM inversion with
            guidance drifts.
        mask_strength, mask_n, mask_threshold, mask_clamp: :func:`diffedit_mask`'s
            ``strength``, ``n``, ``threshold`` and ``clamp``.
        generator: the mask's noise (unused when ``mask`` is given; the edit is deterministic).

    Returns:
        :class:`EditResult`: ``lam`` is the mask (binary :math:`\lambda`), ``start_times`` is
        ``mask · t_k``; ``nfe`` counts the mask, the inversion and the decoding.
    """
    check_fixed_noise(process, "diffedit")
    check_image(x0)
    k = start_index(grid, strength, process.schedule.t_max)
    net = with_guidance(model, guidance, null_cond)
    nfe, given = 0, mask is not None
    if not given:
        mask, nfe = _mask(
            model, x0, process, mask_threshold, source_cond=source_cond,
            target_cond=target_cond, strength=mask_strength, n=mask_n, clamp=mask_clamp,
            guidance=guidance, null_cond=null_cond, generator=generator,
        )  # fmt: skip
    if not isinstance(mask, Tensor) or mask.ndim != x0.ndim:
        raise ValueError(f"mask must be a tensor with x0's {x0.ndim} dims, e.g. (B, 1, H, W)")
    if any(m not in (1, d) for m, d in zip(mask.shape, x0.shape, strict=True)):
        raise ValueError(f"mask {tuple(mask.shape)} does not broadcast to x0 {tuple(x0.shape)}")
    mask = mask.to(device=x0.device, dtype=x0.dtype)
    check_in_range(mask, "mask", 0.0, 1.0)
    sub = grid[k:]
    inv = ddim_invert(model, x0, process, sub, cond=source_cond)

    def keep_outside(step: StepInfo) -> Tensor:
        return mask * step.x_prev + (1 - mask) * inv.trajectory[step.i + 1]

    res = sample(net, inv.x_T, sub, process.rule(0.0), cond=target_cond, callback=keep_outside)
    t_start = float(sub.t[0])
    info = {
        "method": "diffedit",
        "strength": float(strength),
        "t_start": t_start,
        "steps": len(sub),
        "guidance": float(guidance),
        "mask_given": given,
    }
    shape = (x0.shape[0], *mask.shape[1:])
    return EditResult(
        x0=res.x0,
        nfe=nfe + inv.nfe + res.nfe,
        lam=mask.expand(shape),
        start_times=(mask * t_start).to(torch.float64).expand(shape),
        info=info,
    )
