r"""Zero-Shot Image-to-Image translation (pix2pix-zero, Parmar et al., SIGGRAPH 2023), from DDIM
inversion as in its paper or from edit-friendly maps ("Zero-Shot + Ours", Huberman-Spiegelglas
et al., CVPR 2024, Sec. 6 and App. D.2).

**Editing direction** (pix2pix-zero Sec. 3.2). The authors generate many sentences containing
the source word and many containing the target word (GPT-3, about a thousand each), embed every
sentence with the text encoder (the whole ``(L, D)`` sequence) and take the difference of the
means, :math:`\Delta c = \bar c_{tgt} - \bar c_{src}`; the edit condition is
:math:`c_{edit} = c + \Delta c` with :math:`c` the caption of the input (BLIP). With sentence
lists, :func:`edit_direction` is that construction. **Ours:** given only the two prompts, the
direction is the difference of their embeddings, :math:`\Delta c = c_{tgt} - c_{src}`, so that
:math:`c_{edit} = c_{src} + \Delta c` is the target embedding (up to float rounding) and the
identity edit (target = source) has :math:`\Delta c = 0` exactly.

**Cross-attention guidance** (pix2pix-zero Alg. 1). A reference pass denoises the source with
:math:`c` and keeps its cross-attention maps :math:`M^{ref}_t`; the edit pass, at every step,
moves the state down the gradient of the distance of its own maps (with :math:`c_{edit}`) to the
reference, then takes the usual guided step from the moved state:

.. math::
    x_t \leftarrow x_t - \lambda_{xa}\nabla_{x_t}\sum_{l}\tfrac1H\sum_h
        \bigl\|M^{edit}_{t,l,h}(x_t) - M^{ref}_{t,l,h}\bigr\|_F^2, \qquad
    x_{t_{prev}} = \mathrm{step}\bigl(x_t, \hat\varepsilon_w(x_t; c_{edit})\bigr),

summing over every cross-attention layer :math:`l` (all ``attn2`` layers) and averaging over
heads :math:`h` (the authors' ``.sum((1, 2)).mean(0)``). The reference maps come from the source
chain of :mod:`.source_chain`, computed in the same batched call as the target's (the source
states are fixed in advance, so this equals storing them): **from DDIM**, pix2pix-zero's
reconstruction pass, DDIM from the inverted :math:`x_T` with :math:`c_{src}` at the *edit's*
guidance scale, as in their code; **from EF maps** (ours), the EF source chain (the inverted
states, which reconstruct the image exactly). The step is DDIM (:math:`\eta = 0`), or EF's step
with the recorded map :math:`z_i`. Where the authors' code differs from their Alg. 1 we follow
the paper: their loss also averages the unconditional row's maps into the mean (halving each
row's gradient at the same :math:`\lambda_{xa}`) and they step from the unconditional row's
moved copy; we use the conditional maps and one moved state.

**Inversion.** pix2pix-zero inverts with DDIM at guidance 1 with the noise regularization of
:mod:`~nidiff.inversion.noise_reg` (``noise_reg_steps``, default 5 as theirs; ``0``: plain DDIM
inversion). Defaults (:data:`nidiff.methods.ZERO_SHOT_PAPER` / ``ZERO_SHOT_DDIM_PAPER``): EF paper
Table 4, 50 steps, guidance 7.5, :math:`T_{skip} = 0`, :math:`\lambda_{xa}` 0.1 (DDIM) and 0.03
(EF), inversion guidance 1 (DDIM) and 3.5 (EF). The EF paper inverts "Zero-Shot+Our" with an
empty source prompt (and pix2pix-zero with a BLIP caption); here ``source_cond`` is whatever the
caller gives (``nidiff edit``: the ``--source`` prompt, which also defines :math:`\Delta c`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import check_in_range, check_skip
from ..inversion.ddim import DDIMInversion, ddim_invert
from ..inversion.io import Inversion
from ..inversion.noise_reg import NoiseRegularizer
from ..models.attention import (
    AttentionEdit,
    AttentionRecord,
    ControlledDenoiser,
    controlled_attention,
    cross_attention_layers,
    pair_cond,
)
from ..models.contract import model_time, with_guidance
from ..result import EditResult
from ..samplers import sample
from ..schedule import TimeGrid
from .source_chain import SourceChain, ddim_source, ef_source, run_target

__all__ = ["cross_attention_loss", "edit_direction", "zero_shot_edit"]


@torch.no_grad()
def edit_direction(sd: Any, sources: Sequence[str], targets: Sequence[str]) -> Tensor:
    r"""pix2pix-zero's direction :math:`\Delta c = \bar c_{tgt} - \bar c_{src}` ``(1, L, D)``:
    the mean text embedding of the target sentences minus that of the source sentences."""
    src = sd.encode_prompt(list(sources)).mean(0, keepdim=True)
    return sd.encode_prompt(list(targets)).mean(0, keepdim=True) - src


def cross_attention_loss(records: Sequence[AttentionRecord]) -> Tensor:
    r""":math:`\sum_l \frac1H\sum_h \|M^{tgt}_{l,h} - M^{src}_{l,h}\|_F^2`, summed over the
    target rows, over the cross-attention records of one controlled call (sources detached)."""
    loss = None
    for r in records:
        if not r.is_cross:
            continue
        tgt, src = r.step.pairs(r.probs.shape[0], r.probs.device)
        d = r.probs[tgt] - r.probs[src].detach()
        term = d.pow(2).sum((-2, -1)).mean(-1).sum()
        loss = term if loss is None else loss + term
    if loss is None:
        raise ValueError("no cross-attention maps were recorded: the UNet has no cross-attention")
    return loss


def _guide(sd: Any, chain: SourceChain, c_edit: Tensor, xa: float, B: int):
    """``before(i, x)`` of :func:`~.source_chain.run_target`: the cross-attention guidance
    step, one batched forward and backward pass of ``[source; target]`` rows."""
    cond = pair_cond(chain.cond, c_edit)

    def before(i: int, x: Tensor) -> Tensor:
        records: list[AttentionRecord] = []
        net = ControlledDenoiser(sd.denoiser, AttentionEdit(self_max_tokens=0,
                                                            observer=records.append))  # fmt: skip
        src = chain.states[i].to(device=x.device, dtype=x.dtype)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            net(torch.cat([src, xg]), model_time(chain.grid.t[i], x), cond)
            (g,) = torch.autograd.grad(cross_attention_loss(records), xg)
        return x - xa * g

    return before


def _reconstruction(sd, x_start, grid, cond, guidance) -> tuple[list[Tensor], int]:
    """pix2pix-zero's reference pass: DDIM from ``x_start`` with the source condition."""
    states: list[Tensor] = []
    net = with_guidance(sd.denoiser, guidance, sd.null_cond())
    res = sample(net, x_start, grid, sd.process.rule(0.0), cond=cond,
                 callback=lambda info: states.append(info.x_t))  # fmt: skip
    return states, res.nfe


@torch.no_grad()
def zero_shot_edit(
    sd: Any,
    source: Tensor | Inversion | DDIMInversion,
    *,
    source_cond: Tensor,
    target_cond: Tensor | None = None,
    direction: Tensor | None = None,
    inversion: Literal["ef", "ddim"] = "ef",
    grid: TimeGrid | None = None,
    steps: int = 50,
    skip: int = 0,
    source_guidance: float = 3.5,
    guidance: float = 7.5,
    xa_guidance: float = 0.03,
    eta: float = 1.0,
    rule: Any = None,
    noise_reg_steps: int = 5,
    generator: torch.Generator | None = None,
) -> EditResult:
    r"""Zero-Shot I2I on Stable Diffusion latents (module docstring).

    Args:
        sd: the Stable Diffusion adapter (:class:`~nidiff.models.stable_diffusion.StableDiffusion`).
        source: latents :math:`z_0` ``(B, C, h, w)`` to invert here (``inversion`` says how), or
            an :class:`~nidiff.inversion.Inversion` (EF) / a
            :class:`~nidiff.inversion.DDIMInversion` made with ``source_cond``.
        source_cond: the source text embedding :math:`c` ``(B, L, D)``.
        target_cond: the target embedding; the direction is ``target_cond - source_cond``.
        direction: :math:`\Delta c` instead (:func:`edit_direction` of sentence lists).
        inversion: ``"ef"`` (edit-friendly maps) or ``"ddim"`` (pix2pix-zero's), for latents.
        grid / steps: the grid to invert on (default: the pipeline's ``steps``-step grid).
        skip: noisiest steps skipped (the EF paper uses 0).
        source_guidance: the inversion's guidance (EF: 3.5; pix2pix-zero: 1).
        guidance: the edit's guidance scale (also the DDIM reference pass's, as theirs).
        xa_guidance: :math:`\lambda_{xa} \ge 0`; ``0`` is the plain edit with :math:`c_{edit}`.
        eta, rule: the EF inversion's step rule (EF only).
        noise_reg_steps: rounds of pix2pix-zero's noise regularization (DDIM only; ``0``: off).
        generator: the EF forward noise, or the regularization's random shifts.

    Returns:
        :class:`~nidiff.result.EditResult` with the edited latents ``(B, C, h, w)``; ``nfe``
        counts inversion, reference pass and the edit's guided calls (a guidance step counts
        one call, though it also runs the backward pass).
    """
    check_in_range(xa_guidance, "xa_guidance", 0.0, float("inf"))
    cross_attention_layers(sd.unet, "Zero-Shot I2I")
    if (target_cond is None) == (direction is None):
        raise ValueError("give exactly one of target_cond= and direction= (the edit direction)")
    null, nfe = sd.null_cond(), 0
    if isinstance(source, Tensor):
        grid = sd.grid(steps) if grid is None else grid
        check_skip(skip, len(grid))
        if inversion == "ef":
            from ..inversion.edit_friendly import edit_friendly_invert

            source = edit_friendly_invert(
                sd.denoiser, source, sd.process, grid, cond=source_cond, guidance=source_guidance,
                null_cond=null, eta=eta, rule=rule, generator=generator,
            )  # fmt: skip
        elif inversion == "ddim":
            reg = NoiseRegularizer(generator, steps=noise_reg_steps) if noise_reg_steps else None
            source = ddim_invert(
                sd.denoiser, source, sd.process, grid, cond=source_cond,
                guidance=source_guidance, null_cond=null, regularize=reg,
            )  # fmt: skip
        else:
            raise ValueError(f"inversion={inversion!r} must be 'ef' or 'ddim'")
        nfe += len(grid)
    elif grid is not None:
        raise ValueError("grid= is for inverting here; an inversion brings its own grid")
    if isinstance(source, Inversion):
        chain = ef_source(sd.denoiser, source, sd.process, skip, null)
        method = "zero_shot_edit_friendly"
    elif isinstance(source, DDIMInversion):
        skip = check_skip(skip, len(source.grid))
        start = source.trajectory[skip]
        states, calls = _reconstruction(sd, start, source.grid[skip:], source_cond, guidance)
        chain = ddim_source(source.grid[skip:], states, sd.process, 0, source_cond, guidance,
                            nfe=calls)  # fmt: skip
        method = "zero_shot_ddim"
    else:
        raise ValueError(f"source must be latents (B, C, h, w) or an inversion, not {source!r}")
    B = chain.start.shape[0]
    delta = (target_cond - source_cond) if direction is None else direction
    c_edit = chain.cond + delta.to(chain.cond)
    target = with_guidance(sd.denoiser, guidance, null)
    before = _guide(sd, chain, c_edit, float(xa_guidance), B) if xa_guidance > 0 else None
    with controlled_attention(sd.unet):
        x, calls = run_target(
            chain, sd.process, lambda i: lambda x, t, _c=None: target(x, t, c_edit), before=before
        )
    guided = len(chain.grid) if before is not None else 0
    info = {
        "method": method, "steps": len(source.grid), "skip": int(skip),
        "source_guidance": float(source.guidance),
        "guidance": float(guidance), "xa_guidance": float(xa_guidance),
        "noise_reg_steps": int(noise_reg_steps) if method == "zero_shot_ddim" else 0,
    }  # fmt: skip
    return EditResult(x0=x, nfe=nfe + chain.nfe + calls + guided, info=info)
