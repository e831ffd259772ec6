r"""Plug-and-Play diffusion features (Tumanyan et al., CVPR 2023), from DDIM inversion as in its
paper or from edit-friendly maps (ours; the EF paper compares with PnP on DDIM inversion only).

PnP translates an image by generating with the target prompt while injecting, at each step,
the *source's* internal representations, computed from the source's own state at that time:

* **features** (PnP Sec. 4, "feature injection"): the output of one decoder ResNet block's
  residual branch, :math:`f^{tgt}_t \leftarrow f^{src}_t`, for the first
  :math:`\tau_f` of the steps (decoder layer 4, ``up_blocks.1.resnets.1`` of SD 1.x/2.x);
* **self-attention** (PnP Sec. 4, "self-attention injection"): queries and keys of the decoder's
  self-attention layers, :math:`q^{tgt}_t, k^{tgt}_t \leftarrow q^{src}_t, k^{src}_t` (so the
  map :math:`A = \mathrm{softmax}(qk^\top/\sqrt d)` is the source's while the values stay the
  target's), in decoder layers 4–11 for the first :math:`\tau_A` of the steps.

Both go into every guidance row of the target. In the authors' code the source row is one row
with the inversion prompt (empty by default) injected into both the conditional and the
unconditional target rows. **Ours:** the source runs with both branches of guidance too,
``[src_c, tgt_c, src_∅, tgt_∅]``, each target row taking its own branch's source row; with
PnP's empty inversion prompt the two source rows coincide and this is their computation. The
controls are those of :mod:`nidiff.models.attention` (``self_layers``, ``feature_layers``; the
cross-attention is left to the fused kernel).

**Source chain** (:mod:`.source_chain`). From DDIM inversion the source state at each step is
the inversion's own state at that time, as the authors' code loads its saved latents; PnP
inverts with many more steps than it generates with (1000 and 50), so the inversion runs on a
refinement of the edit grid (:func:`refined_grid`, ``inversion_steps``) whose states at the edit
times are kept. From EF maps the source states are the inverted ones, and the target replays
the maps: with the identity edit it reconstructs the input exactly.

Defaults (:data:`nidiff.methods.PNP_PAPER`): the EF paper's Table 3 row for PnP (50 steps,
guidance 10, :math:`T_{skip} = 0`, :math:`\tau_f/\tau_A` = 40/25 of 50 steps, inversion
guidance 1 over 1000 steps). The windows are fractions of the steps run, rounded
(:func:`~nidiff.models.attention.window_threshold`; the authors floor, equal at 50 steps).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import check_skip
from ..inversion.ddim import DDIMInversion, ddim_invert
from ..inversion.io import Inversion
from ..models.attention import (
    AttentionEdit,
    ControlledDenoiser,
    controlled_attention,
    pair_cond,
    pnp_self_layers,
    window_threshold,
)
from ..models.attention.features import check_layers
from ..result import EditResult
from ..schedule import TimeGrid, custom_grid
from .p2p import RowGuidance
from .source_chain import ddim_source, ef_source, run_target

__all__ = ["PNP_FEATURE_LAYER", "pnp_edit", "pnp_layers", "refined_grid"]

#: PnP's feature layer: decoder layer 4 of SD 1.x/2.x (the authors' ``up_blocks[1].resnets[1]``).
PNP_FEATURE_LAYER = "up_blocks.1.resnets.1"


def pnp_layers(unet: Any, need_self: bool = True) -> frozenset[str]:
    """PnP's self-attention layers of ``unet`` (:func:`pnp_self_layers`), checked with its
    feature block :data:`PNP_FEATURE_LAYER`: ``ValueError`` for a UNet that lacks either (e.g.
    one without attention), unless ``need_self=False`` (no self-attention injection)."""
    layers = pnp_self_layers(unet)
    if need_self and not layers:
        raise ValueError(
            "Plug-and-Play injects self-attention in the UNet's decoder, and this UNet has no "
            "decoder self-attention layers"
        )
    check_layers(unet, None, frozenset({PNP_FEATURE_LAYER}))
    return layers


def refined_grid(grid: TimeGrid, steps: int, schedule: Any) -> TimeGrid:
    """``grid`` with every step split into ``ceil(steps / N)`` equal parts (times rounded to
    integers on a discrete schedule, repeats dropped): a grid of about ``steps`` steps through
    every time of ``grid``, for PnP's long inversion."""
    n = len(grid)
    parts = max(1, math.ceil(int(steps) / n))
    times: list[float] = []
    for t, t_prev in grid:
        a, b = float(t), float(t_prev)
        times += [a - k * (a - b) / parts for k in range(parts)]
    if getattr(schedule, "T", None) is not None:  # a discrete schedule: integer times
        times = [float(round(t)) for t in times]
    kept = [t for i, t in enumerate(times) if t > 0 and (i == 0 or t < times[i - 1])]
    return custom_grid(kept, schedule)


def _ddim_states(sd, x0, grid, inversion_steps, cond, guidance) -> tuple[list[Tensor], int]:
    """PnP's DDIM inversion on the refined grid; its states at ``grid``'s times."""
    fine = refined_grid(grid, inversion_steps, sd.process.schedule)
    inv = ddim_invert(sd.denoiser, x0, sd.process, fine, cond=cond, guidance=guidance,
                      null_cond=sd.null_cond())  # fmt: skip
    at = {float(t): x for t, x in zip(fine.times, inv.trajectory, strict=True)}
    return [at[float(t)] for t in grid.t], inv.nfe


def _paired(sd: Any, edit: AttentionEdit, scales: list[float]) -> RowGuidance:
    """The controlled model of a batch ``[source rows; target rows]`` with one guidance scale
    per row; both branches of guidance are paired (each target row takes its source's)."""
    B = len(scales) // 2
    null = sd.null_cond()
    nulls = null.expand(B, *null.shape[1:])
    return RowGuidance(ControlledDenoiser(sd.denoiser, edit), scales, pair_cond(nulls, nulls))


def _ef_invert(sd, x0, grid, edit, cond, guidance, eta, rule, generator) -> Inversion:
    """EF inversion through the edit's batch layout: each call runs ``[x; x]`` as source and
    target rows, so the identity edit (same prompt and guidance) replays the inversion's
    arithmetic bit for bit (a plain :func:`~nidiff.inversion.edit_friendly_invert` differs from
    the paired calls by float rounding that depends on the batch, ``~1e-5`` in float32)."""
    from ..inversion.edit_friendly import edit_friendly_invert

    B = x0.shape[0]
    model, paired = _paired(sd, edit, [float(guidance)] * (2 * B)), pair_cond(cond, cond)

    def twin(x: Tensor, t: Tensor, _cond: Any = None) -> Tensor:
        return model(torch.cat([x, x]), t, paired)[B:]

    with controlled_attention(sd.unet):
        inv = edit_friendly_invert(twin, x0, sd.process, grid, eta=eta, rule=rule,
                                   generator=generator)  # fmt: skip
    return replace(inv, cond=cond.detach().clone(), guidance=float(guidance))


@torch.no_grad()
def pnp_edit(
    sd: Any,
    source: Tensor | Inversion | DDIMInversion,
    *,
    source_cond: Tensor,
    target_cond: Tensor,
    inversion: Literal["ef", "ddim"] = "ef",
    grid: TimeGrid | None = None,
    steps: int = 50,
    skip: int = 0,
    source_guidance: float = 3.5,
    guidance: float = 10.0,
    feature_replace: float = 0.8,
    self_replace: float = 0.5,
    feature_layers: Iterable[str] = (PNP_FEATURE_LAYER,),
    self_layers: Iterable[str] | None = None,
    inversion_steps: int = 1000,
    eta: float = 1.0,
    rule: Any = None,
    generator: torch.Generator | None = None,
) -> EditResult:
    r"""Plug-and-Play on Stable Diffusion latents (module docstring).

    Args:
        sd: the Stable Diffusion adapter (:class:`~nidiff.models.stable_diffusion.StableDiffusion`).
        source: latents :math:`z_0` ``(B, C, h, w)`` to invert here, or an EF
            :class:`~nidiff.inversion.Inversion` / a :class:`~nidiff.inversion.DDIMInversion`
            (its trajectory are the source states) made with ``source_cond``.
        source_cond, target_cond: text embeddings ``(B, L, D)`` (PnP inverts with ``""``).
        inversion: ``"ef"`` or ``"ddim"``, for latents.
        grid / steps: the edit grid (default: the pipeline's ``steps``-step grid).
        skip: noisiest steps skipped (PnP: 0).
        source_guidance: the inversion's guidance (PnP: 1; EF: 3.5).
        guidance: the target's guidance scale.
        feature_replace, self_replace: :math:`\tau_f`, :math:`\tau_A`, fractions in ``[0, 1]``
            of the steps run with feature / self-attention injection; ``0`` turns one off.
        feature_layers: ResNet blocks whose features are injected (module names).
        self_layers: self-attention processor names (default :func:`pnp_self_layers`).
        inversion_steps: DDIM inversion steps (latents with ``"ddim"`` only; PnP: 1000).
        eta, rule, generator: the EF inversion's rule and forward noise.

    Returns:
        :class:`~nidiff.result.EditResult`: the edited latents; ``nfe`` counts the inversion
        and one batched call (source and target rows, both guidance branches) per step.
    """
    null, nfe = sd.null_cond(), 0
    if isinstance(source, Tensor):
        grid = sd.grid(steps) if grid is None else grid
    elif grid is not None:
        raise ValueError("grid= is for inverting here; an inversion brings its own grid")
    elif isinstance(source, (Inversion, DDIMInversion)):
        grid = source.grid
    else:
        raise ValueError(f"source must be latents (B, C, h, w) or an inversion, not {source!r}")
    skip = check_skip(skip, len(grid))
    if self_layers is None:
        self_layers = pnp_layers(sd.unet, float(self_replace) > 0)
    edit = AttentionEdit(
        self_t=window_threshold(grid, self_replace, skip),
        feature_t=window_threshold(grid, feature_replace, skip),
        self_layers=self_layers, feature_layers=frozenset(feature_layers), cross_maps=False,
    )  # fmt: skip
    ControlledDenoiser(sd.denoiser, edit)  # checks the layer names before any work
    B = (source if isinstance(source, Tensor) else source.x_T).shape[0]
    if isinstance(source, Tensor) and inversion == "ef":
        source, nfe = _ef_invert(sd, source, grid, edit, source_cond, source_guidance, eta, rule,
                                 generator), len(grid)  # fmt: skip
    elif isinstance(source, Tensor) and inversion == "ddim":
        if int(inversion_steps) < 1:
            raise ValueError(f"inversion_steps={inversion_steps!r} must be >= 1")
        states, nfe = _ddim_states(sd, source, grid, inversion_steps, source_cond,
                                   source_guidance)  # fmt: skip
        source = DDIMInversion(states[0], grid, source_cond, float(source_guidance),
                               [*states, source], nfe)  # fmt: skip
    elif isinstance(source, Tensor):
        raise ValueError(f"inversion={inversion!r} must be 'ef' or 'ddim'")
    if isinstance(source, Inversion):
        chain = ef_source(sd.denoiser, source, sd.process, skip, null)
        method = "pnp_edit_friendly"
    else:
        chain = ddim_source(grid, source.trajectory[:-1], sd.process, skip, source.cond,
                            source.guidance)  # fmt: skip
        method = "pnp_ddim"
    model = _paired(sd, edit, [chain.guidance] * B + [float(guidance)] * B)
    cond = pair_cond(chain.cond, target_cond.to(chain.cond))
    with controlled_attention(sd.unet):
        x, calls = run_target(chain, sd.process, lambda i: chain.paired(model, i, cond, B))
    info = {
        "method": method, "steps": len(grid), "skip": int(skip),
        "source_guidance": float(chain.guidance), "guidance": float(guidance),
        "feature_replace": float(feature_replace), "self_replace": float(self_replace),
        "feature_layers": sorted(edit.feature_layers), "self_layers": sorted(edit.self_layers),
    }  # fmt: skip
    if method == "pnp_ddim":
        info["inversion_steps"] = int(source.nfe)  # the refined grid's steps
    return EditResult(x0=x, nfe=nfe + chain.nfe + calls, info=info)
