r"""Prompt-to-Prompt editing (Hertz et al., 2022) on edit-friendly DDPM noise maps ("P2P + Ours",
Huberman-Spiegelglas et al., CVPR 2024, Sec. 6 and App. D.1).

:func:`p2p_edit_friendly` inverts the source latents :math:`z_0` with EF under the source
prompt (EF Alg. 1, guidance :math:`w_{src}`), then regenerates **source and target together**,
one batch ``[source; target]`` that replays the *same* maps :math:`\{x_{t_{skip}}, z_i\}` from
step ``skip``, while :mod:`nidiff.models.attention` injects the source's attention into the
target:

.. math::
    x^{src}_{prev} = \hat\mu(x^{src}; c_{src}, w_{src}) + \sigma z_i, \qquad
    x^{tgt}_{prev} = \hat\mu\bigl(x^{tgt}; c_{tgt}, w;\,
        M^{tgt} \leftarrow \mathrm{Edit}(M^{src}, M^{tgt}, t)\bigr) + \sigma z_i .

Each row has its own guidance (:class:`RowGuidance`): the source row keeps the inversion's
condition and scale and so reproduces the inversion exactly (P2P never alters source rows),
which is what makes its attention maps the right ones to inject; the target row uses the
generation scale. Guidance batches ``[cond rows; null rows]``; only the conditional rows are
controlled (the offsets of :func:`~nidiff.models.attention.pair_cond`).

Windows: ``cross_replace`` and ``self_replace`` are fractions of the ``N - skip`` steps that are
run (the first ones, noisiest first); ``0`` turns a control off, ``1`` keeps it on to the end.
Defaults follow the EF paper's Table 3 row "P2P + Our inv." (100 steps, inversion scale 3.5,
generation scale 9, :math:`T_{skip} = 12`, :math:`\tau_x/\tau_a = 60/20`, read as the fractions
0.6/0.2: the paper lowers P2P's cross-attention parameter "from 0.8 to 0.6"); EF editing alone
uses scale 15 and :math:`T_{skip} = 36`.

:func:`p2p_generate` is plain Prompt-to-Prompt on a generated pair: the same start and the same
DDPM-family noise for both prompts.

**Families.** Both run on Stable Diffusion 1.x/2.x (:class:`StableDiffusion`, a condition is the
text embedding ``(B, L, D)``) and SDXL (:class:`~nidiff.models.sdxl.StableDiffusionXL`, a dict
condition: the two encoders' hidden states concatenated on the feature axis, one token axis of
``L = 77``, plus the pooled ``text_embeds`` and optional ``time_ids``). SDXL's UNet is a diffusers
``UNet2DConditionModel`` whose transformer blocks have the same ``attn1`` (self) / ``attn2``
(cross, keys = the ``L`` text tokens) ``Attention`` layers, so the same processors control it;
:func:`~nidiff.models.attention.pair_cond` carries every entry of the condition row by row, so
the source rows keep the source prompt's pooled embedding and the target rows the target's, and
the base-model time ids (computed by the UNet adapter from the latent size) are the same on all
rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import check_in_range, check_skip
from ..inversion.io import Inversion, describe_process
from ..models.attention import (
    AttentionEdit,
    AttentionRecord,
    ControlledDenoiser,
    TokenMap,
    controlled_attention,
    cross_attention_layers,
    pair_cond,
    plain_cond,
    refine_token_map,
    replace_token_map,
    token_weights,
    window_threshold,
    word_spans,
)
from ..models.contract import Denoiser, concat_cond
from ..models.latent import repeat_cond
from ..models.sdxl import StableDiffusionXL
from ..models.stable_diffusion import StableDiffusion
from ..noise.base import white_noise
from ..result import EditResult
from ..schedule import TimeGrid

__all__ = [
    "SELF_MAX_TOKENS",
    "P2PResult",
    "RowGuidance",
    "p2p_edit_friendly",
    "p2p_generate",
    "p2p_token_map",
]

Mode = Literal["replace", "refine"]
#: ``observer(record)``: reads every explicitly computed attention map of the run.
Observer = Callable[[AttentionRecord], None]
#: The adapters whose UNet attention Prompt-to-Prompt controls (module docstring).
TextUNet = StableDiffusion | StableDiffusionXL
#: The default ``self_max_tokens`` of each family: the coarse layers that carry the layout. SD at
#: 512²: P2P's ``16²`` (the 16² and 8² layers of a 64² latent); SDXL at 1024²: ``32²``, its
#: coarsest attention level (its 128² level has no attention, then 64² and 32²), so that
#: ``self_replace`` is not a no-op there.
SELF_MAX_TOKENS = {"sd": 16**2, "sdxl": 32**2}


@dataclass(frozen=True, eq=False)
class P2PResult(EditResult):
    """An :class:`EditResult` whose ``x0`` is the target edit, with the source row beside it.

    Attributes:
        source: the source row of the same batched run ``(B, *dims)``: the reconstruction of
            the inverted latents (:func:`p2p_edit_friendly`) or the generated source image
            (:func:`p2p_generate`).
        inversion: the edit-friendly inversion used (``None`` for :func:`p2p_generate`);
            one made here went through the explicit attention arithmetic, so plain
            :func:`~nidiff.inversion.edit_friendly_regenerate` reproduces it to ``~1e-5`` in
            float32 (not bit for bit), and :func:`p2p_edit_friendly` exactly.
    """

    source: Tensor | None = None
    inversion: Inversion | None = None


class RowGuidance:
    r"""Classifier-free guidance with one scale per row:
    :math:`\hat\varepsilon_b = \hat\varepsilon_b(\varnothing) + w_b(\hat\varepsilon_b(c_b) -
    \hat\varepsilon_b(\varnothing))`, both branches in one batched call ``[cond; null]``.

    Args:
        model: a model following the contract.
        scales: ``(B,)`` guidance scales ``>= 0``, one per row of ``x_t``.
        null_cond: the unconditional condition for the whole batch (``B`` rows), concatenated
            after ``cond`` (:func:`~nidiff.models.contract.concat_cond`).
    """

    def __init__(self, model: Denoiser, scales: Sequence[float], null_cond: Any):
        for w in scales:
            check_in_range(w, "guidance", 0.0, float("inf"))
        self.model = model
        self.scales = torch.tensor([float(w) for w in scales], dtype=torch.float64)
        self.null_cond = null_cond

    def __call__(self, x_t: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        B, n_scales = x_t.shape[0], self.scales.shape[0]
        if n_scales != B:
            raise ValueError(f"{n_scales} guidance scales for a batch of {B}")
        tt = torch.as_tensor(t, device=x_t.device)
        t2 = tt if tt.ndim == 0 else torch.cat([tt.expand(B, *tt.shape[1:])] * 2)
        out = self.model(torch.cat([x_t, x_t]), t2, concat_cond(cond, self.null_cond))
        eps_c, eps_u = out[:B], out[B:]
        w = self.scales.to(device=x_t.device, dtype=x_t.dtype).reshape(B, *[1] * (x_t.ndim - 1))
        return eps_u + w * (eps_c - eps_u)


def p2p_token_map(sd: TextUNet, source_prompt: str, target_prompt: str, mode: Mode) -> TokenMap:
    """The :class:`~nidiff.models.attention.TokenMap` of ``mode`` (``"replace"``: word swap,
    ``"refine"``: added words) for the adapter's tokenizer.

    SDXL has two tokenizers (CLIP ViT-L's and OpenCLIP bigG's), whose hidden states are
    concatenated on the feature axis: the cross-attention keys are one sequence of ``L`` token
    *positions* shared by both. The two tokenizers use the same CLIP byte-pair encoding (same
    vocabulary and merges; only the padding token differs), so every word of a prompt sits at
    the same positions in both sequences, and the map is built from the first tokenizer's
    positions. That is checked here (:func:`_check_positions`): a second tokenizer that places a
    word elsewhere, or has another context length, is refused rather than mis-aligned.
    """
    if mode not in ("replace", "refine"):
        raise ValueError(f"mode={mode!r} must be 'replace' (word swap) or 'refine' (added words)")
    second = getattr(sd, "tokenizer_2", None)
    if second is not None:
        for prompt in (source_prompt, target_prompt):
            _check_positions(sd.tokenizer, second, prompt)
    build = replace_token_map if mode == "replace" else refine_token_map
    return build(sd.tokenizer, source_prompt, target_prompt)


def _check_positions(first: Any, second: Any, prompt: str) -> None:
    """Raise unless both tokenizers put every word of ``prompt`` at the same token positions
    in a context of the same length (SDXL's two CLIP tokenizers, :func:`p2p_token_map`)."""
    L1, L2 = int(first.model_max_length), int(second.model_max_length)
    if L1 != L2:
        raise ValueError(
            f"the two tokenizers have context lengths {L1} and {L2}; Prompt-to-Prompt needs one "
            "token axis"
        )
    a = [(w.start, w.stop) for w in word_spans(first, prompt)]
    b = [(w.start, w.stop) for w in word_spans(second, prompt)]
    if a != b:
        raise ValueError(
            f"the two tokenizers place the words of {prompt!r} at different token positions "
            f"({a} and {b}); Prompt-to-Prompt aligns one token axis"
        )


def _edit(
    sd: TextUNet,
    source_prompt: str,
    target_prompt: str,
    grid: TimeGrid,
    skip: int,
    cross_replace: float,
    self_replace: float,
    mode: Mode,
    reweight: Mapping[str, float] | None,
    self_max_tokens: int,
    observer: Observer | None,
) -> AttentionEdit:
    cross_attention_layers(sd.unet, "Prompt-to-Prompt")  # else nothing would be controlled
    weights = None if not reweight else token_weights(sd.tokenizer, target_prompt, reweight)
    return AttentionEdit(
        token_map=p2p_token_map(sd, source_prompt, target_prompt, mode),
        cross_t=window_threshold(grid, cross_replace, skip),
        self_t=window_threshold(grid, self_replace, skip),
        weights=weights,
        self_max_tokens=self_max_tokens,
        observer=observer,
    )


@torch.no_grad()
def p2p_edit_friendly(
    sd: TextUNet,
    source: Tensor | Inversion,
    source_prompt: str,
    target_prompt: str,
    *,
    steps: int = 100,
    grid: TimeGrid | None = None,
    skip: int = 12,
    source_guidance: float = 3.5,
    guidance: float = 9.0,
    eta: float = 1.0,
    cross_replace: float = 0.6,
    self_replace: float = 0.2,
    mode: Mode = "replace",
    reweight: Mapping[str, float] | None = None,
    self_max_tokens: int | None = None,
    generator: torch.Generator | None = None,
    observer: Observer | None = None,
) -> P2PResult:
    r"""Prompt-to-Prompt with edit-friendly inversion (module docstring).

    Args:
        sd: the Stable Diffusion or SDXL adapter (UNet, tokenizers, text encoders, process).
        source: latents :math:`z_0` ``(B, C, h, w)`` (:meth:`StableDiffusion.encode_image`) to
            invert here, or an :class:`~nidiff.inversion.Inversion` made under the source
            prompt (its grid, ``eta``, condition and guidance are then used as they are).
            Inverting here runs the UNet through the same explicit attention arithmetic as the
            regeneration, so the source row reproduces :math:`z_0` to float rounding even in
            half precision; an inversion made by plain
            :func:`~nidiff.inversion.edit_friendly_invert` (diffusers' attention) is reproduced
            up to the difference of the two attention computations (``~1e-5`` relative in
            float32, much more in bfloat16).
        source_prompt: the prompt describing the source (inversion condition; its tokens are
            aligned with the target's).
        target_prompt: the edit prompt. ``mode="replace"`` needs as many words as the source.
        steps: number of steps of the pipeline's own grid (``sd.grid(steps)``: SD's
            :meth:`StableDiffusion.leading_grid`, SDXL's scheduler spacing) when inverting
            here; ignored with ``grid`` or an inversion.
        grid: an explicit grid ending at ``t = 0`` (inverting here only).
        skip: :math:`T_{skip}`, the number of noisiest steps skipped, ``0 <= skip < N``.
        source_guidance: the inversion's guidance scale :math:`w_{src}` (inverting here only).
        guidance: the target's generation scale :math:`w`.
        eta: :math:`\eta \in (0, 1]` of the inversion (inverting here only).
        cross_replace, self_replace: fractions in ``[0, 1]`` of the ``N - skip`` steps run
            during which cross-attention maps are replaced / self-attention maps injected.
        mode: ``"replace"`` (word swap) or ``"refine"`` (added words).
        reweight: ``{word of the target prompt: factor}``, P2P re-weighting of those tokens'
            cross-attention probabilities at every step (after the softmax, not renormalised).
        self_max_tokens: inject self-attention only in layers of at most this many pixels;
            ``None``: the family's coarse layers (:data:`SELF_MAX_TOKENS`: P2P's ``16²`` on SD,
            ``32²`` on SDXL).
        generator: the inversion's forward noise (inverting here only).
        observer: optional ``observer(AttentionRecord)`` reading the controlled maps.

    Returns:
        :class:`P2PResult`: ``x0`` the target edit latents ``(B, C, h, w)``, ``source`` the
        source row (the reconstruction of :math:`z_0`), ``inversion``; decode both with
        :meth:`StableDiffusion.decode_latents`. ``nfe`` counts the inversion's ``N`` calls (if
        made here), ``skip`` replayed calls (an inversion without trajectory) and ``N - skip``
        batched regeneration calls.
    """
    from ..inversion.edit_friendly import edit_friendly_invert, edit_friendly_regenerate

    if isinstance(source, Inversion):
        if grid is not None:
            raise ValueError("grid= is for inverting here; an Inversion brings its own grid")
        grid = source.grid
    elif isinstance(source, Tensor) and source.ndim == 4:
        grid = sd.grid(steps) if grid is None else grid
    else:
        raise ValueError(f"source must be latents (B, C, h, w) or an Inversion, not {source!r}")
    n = len(grid)
    skip = check_skip(skip, n)
    self_max_tokens = _self_tokens(sd, self_max_tokens)
    # the edit is built (and its arguments checked) before any network call
    edit = _edit(
        sd, source_prompt, target_prompt, grid, skip, cross_replace, self_replace, mode,
        reweight, self_max_tokens, observer,
    )  # fmt: skip
    null, nfe = sd.null_cond(), 0
    if isinstance(source, Inversion):
        inv = source
    else:  # through the controlled layers (no targets): the source row's own arithmetic
        src_cond = sd.encode_prompt([source_prompt] * source.shape[0])
        plain = ControlledDenoiser(sd.denoiser, AttentionEdit(self_max_tokens=self_max_tokens))
        with controlled_attention(sd.unet):
            inv = edit_friendly_invert(
                plain, source, sd.process, grid, cond=plain_cond(src_cond),
                guidance=source_guidance, null_cond=plain_cond(null), eta=eta,
                generator=generator,
            )  # fmt: skip
        inv = replace(inv, cond=src_cond)
        nfe += n
    if not _is_text_cond(inv.cond):
        raise ValueError(
            "the inversion must be conditioned on a text embedding (B, L, D) (SDXL: a dict "
            "holding it as encoder_hidden_states)"
        )
    B = inv.x_T.shape[0]
    if inv.xs is not None or skip == 0:
        x_skip = inv.x_T if skip == 0 else inv.xs[skip]
    else:  # replay the source chain (the inverted state, bit for bit)
        sub = _head(inv, skip)
        x_skip = edit_friendly_regenerate(sd.denoiser, sub, sd.process, null_cond=null).x0
        nfe += skip
    pair = _paired(inv, skip, x_skip)
    target_cond = _to(sd.encode_prompt([target_prompt] * B), _device(inv.cond))
    model = RowGuidance(
        ControlledDenoiser(sd.denoiser, edit),
        [inv.guidance] * B + [float(guidance)] * B,
        plain_cond(repeat_cond(null, 2 * B)),
    )
    with controlled_attention(sd.unet):
        out = edit_friendly_regenerate(
            model, pair, sd.process, cond=pair_cond(inv.cond, target_cond), guidance=1.0
        )
    info = {
        "method": "p2p_edit_friendly",
        "steps": n,
        "skip": skip,
        "eta": inv.eta,
        "source_guidance": inv.guidance,
        "guidance": float(guidance),
        "cross_replace": float(cross_replace),
        "self_replace": float(self_replace),
        "mode": mode,
        "reweight": dict(reweight or {}),
        "self_max_tokens": int(self_max_tokens),
        "source_prompt": source_prompt,
        "target_prompt": target_prompt,
    }
    return P2PResult(x0=out.x0[B:], nfe=nfe + out.nfe, info=info, source=out.x0[:B], inversion=inv)


@torch.no_grad()
def p2p_generate(
    sd: TextUNet,
    source_prompt: str,
    target_prompt: str,
    *,
    steps: int = 50,
    grid: TimeGrid | None = None,
    size: int | None = None,
    batch: int = 1,
    guidance: float = 7.5,
    eta: float = 1.0,
    cross_replace: float = 0.8,
    self_replace: float = 0.4,
    mode: Mode = "replace",
    reweight: Mapping[str, float] | None = None,
    self_max_tokens: int | None = None,
    generator: torch.Generator | None = None,
    observer: Observer | None = None,
) -> P2PResult:
    r"""Plain Prompt-to-Prompt on a generated pair (P2P's own setting, no inversion).

    Source and target rows start from the same :math:`x_T` and share every step's white noise
    (DDPM-family steps, :math:`\eta \in (0, 1]`; the last map is zero, the usual final step
    :math:`z_0 = \hat z_0`); defaults are P2P's (50 steps, scale 7.5, cross/self 0.8/0.4).

    Args:
        sd: the Stable Diffusion or SDXL adapter.
        source_prompt, target_prompt, mode, reweight, self_max_tokens, observer: as for
            :func:`p2p_edit_friendly`; ``cross_replace`` / ``self_replace`` are fractions of all
            steps.
        steps / grid: the pipeline's own grid (``sd.grid(steps)``) or an explicit grid
            ending at ``t = 0``.
        size: image side in pixels (default :attr:`StableDiffusion.default_image_size`).
        batch: number of independent pairs ``B``.
        guidance: guidance scale of both rows. eta: :math:`\eta \in (0, 1]`.
        generator: source of :math:`x_T` and the step noise (required).

    Returns:
        :class:`P2PResult` with ``x0`` the target latents and ``source`` the source latents.
    """
    from ..inversion.edit_friendly import edit_friendly_regenerate

    if generator is None:
        raise ValueError("p2p_generate needs a generator (the start state and step noise)")
    check_in_range(eta, "eta", 0.0, 1.0, low_open=True)
    grid = sd.grid(steps) if grid is None else grid
    size = sd.default_image_size if size is None else int(size)
    sd.check_image_size(size, size)
    f, C = sd.vae_scale_factor, int(sd.vae.config.latent_channels)
    shape = (batch, C, size // f, size // f)
    draw = [white_noise(shape, generator=generator) for _ in range(len(grid) + 1)]
    draw = [z.to(sd.device) for z in draw]
    zs = [*draw[1:-1], torch.zeros_like(draw[-1])]
    null = sd.null_cond()
    self_max_tokens = _self_tokens(sd, self_max_tokens)
    start = Inversion(
        x_T=draw[0], zs=zs, grid=grid, cond=None, guidance=float(guidance),
        eta=float(eta), x0=torch.zeros_like(draw[0]), xs=None,
        process_info=describe_process(sd.process),
    )  # fmt: skip
    edit = _edit(
        sd, source_prompt, target_prompt, grid, 0, cross_replace, self_replace, mode, reweight,
        self_max_tokens, observer,
    )  # fmt: skip
    model = RowGuidance(
        ControlledDenoiser(sd.denoiser, edit),
        [float(guidance)] * (2 * batch),
        plain_cond(repeat_cond(null, 2 * batch)),
    )
    src = sd.encode_prompt([source_prompt] * batch)
    tgt = sd.encode_prompt([target_prompt] * batch)
    with controlled_attention(sd.unet):
        out = edit_friendly_regenerate(
            model, _paired(start, 0, start.x_T), sd.process, cond=pair_cond(src, tgt),
            guidance=1.0,
        )  # fmt: skip
    info = {
        "method": "p2p_generate",
        "steps": len(grid),
        "eta": float(eta),
        "guidance": float(guidance),
        "cross_replace": float(cross_replace),
        "self_replace": float(self_replace),
        "mode": mode,
        "reweight": dict(reweight or {}),
        "self_max_tokens": int(self_max_tokens),
        "source_prompt": source_prompt,
        "target_prompt": target_prompt,
    }
    return P2PResult(x0=out.x0[batch:], nfe=out.nfe, info=info, source=out.x0[:batch])


def _self_tokens(sd: TextUNet, n: int | None) -> int:
    """``n``, or the family's default (:data:`SELF_MAX_TOKENS`)."""
    if n is None:
        return SELF_MAX_TOKENS.get(getattr(sd, "family", "sd"), SELF_MAX_TOKENS["sd"])
    return n


def _is_text_cond(cond: Any) -> bool:
    """A text condition: an embedding ``(B, L, D)`` or a dict holding one (SDXL)."""
    states = cond.get("encoder_hidden_states") if isinstance(cond, dict) else cond
    return isinstance(states, Tensor) and states.ndim == 3


def _device(cond: Any) -> torch.device:
    states = cond["encoder_hidden_states"] if isinstance(cond, dict) else cond
    return states.device


def _to(cond: Any, device: torch.device) -> Any:
    """``cond`` (a tensor or a dict of tensors) on ``device``."""
    if isinstance(cond, dict):
        return {k: v.to(device) for k, v in cond.items()}
    return cond.to(device)


def _head(inv: Inversion, stop: int) -> Inversion:
    """The first ``stop`` steps of ``inv`` (regenerating them gives the state at
    ``grid.t[stop]``)."""
    return Inversion(
        x_T=inv.x_T, zs=list(inv.zs[:stop]), grid=inv.grid[:stop], cond=inv.cond,
        guidance=inv.guidance, eta=inv.eta, x0=inv.x0, xs=None, process_info=inv.process_info,
        sampler=inv.sampler,
    )  # fmt: skip


def _paired(inv: Inversion, skip: int, x_skip: Tensor) -> Inversion:
    """The steps ``skip ..`` of ``inv`` for a batch ``[source; target]``: the same start state
    and the same maps on both halves."""

    def twice(u: Tensor) -> Tensor:
        return torch.cat([u, u])

    return Inversion(
        x_T=twice(x_skip), zs=[twice(z) for z in inv.zs[skip:]], grid=inv.grid[skip:],
        cond=None, guidance=1.0, eta=inv.eta, x0=twice(inv.x0), xs=None,
        process_info=inv.process_info, zero_last=inv.zero_last, sampler=inv.sampler,
    )  # fmt: skip
