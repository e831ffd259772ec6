r"""The editing methods of ``nidiff edit``: one small function and one table row each.

Every method maps :math:`(x_0, c_{src}, c_{tgt})` in the model's space (pixels or SD latents,
:mod:`nidiff.cli.model`) to an :class:`~nidiff.editing.EditResult` and the model calls it spent
outside that result (weighting map, inversion). **Adding a method** (e.g. Prompt-to-Prompt):
write ``def _name(c: Call) -> tuple[EditResult, int]`` and add a :class:`Method` row to
:data:`METHODS`; ``--method`` choices, its help and ``--save-map`` / ``--skip`` checks follow
from the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["METHODS", "Call", "EditOptions", "Method", "check_method", "run_method"]


@dataclass(frozen=True)
class EditOptions:
    """The resolved numeric options of ``nidiff edit`` (see its ``--help``)."""

    steps: int
    guidance: float
    source_guidance: float
    eta: float
    skip: int
    strength: float
    factor: int
    map_n: int
    map_strength: float
    threshold: float
    preserve: bool
    cross_replace: float = 0.6
    self_replace: float = 0.2
    p2p_mode: str = "replace"
    reweight: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Call:
    """One edit: the model (:class:`~nidiff.cli.model.LoadedCli`), its input and conditions,
    the leading grid of ``o.steps`` steps and the one generator every draw comes from."""

    m: Any
    x0: Tensor
    src: Any
    tgt: Any
    grid: Any
    g: torch.Generator
    o: EditOptions
    names: tuple[str | None, str | None] = (None, None)  # the source and target prompts

    @property
    def guide(self) -> dict[str, Any]:
        """Target-side guidance: ``--guidance`` with the model's unconditional condition."""
        return {"guidance": self.o.guidance, "null_cond": self.m.null}

    @property
    def src_guide(self) -> dict[str, Any]:
        """Inversion-side guidance: ``--source-guidance``."""
        return {"guidance": self.o.source_guidance, "null_cond": self.m.null}

    def weighting_map(self):
        from ..editing import weighting_map

        o = self.o
        return weighting_map(
            self.m.denoiser, self.x0, self.m.process, source_cond=self.src, target_cond=self.tgt,
            strength=o.map_strength, n=o.map_n, generator=self.g,
        )  # fmt: skip

    def ef_invert(self):
        from ..inversion import edit_friendly_invert

        return edit_friendly_invert(
            self.m.denoiser, self.x0, self.m.process, self.grid, cond=self.src, eta=self.o.eta,
            generator=self.g, **self.src_guide,
        )  # fmt: skip


@dataclass(frozen=True)
class Method:
    """A row of :data:`METHODS`: the function, a short help (empty: the name says it), whether
    it has a λ map or mask (``--save-map``), whether it inverts, then skips steps (``--skip``)
    and whether it needs a text-conditional latent model (Stable Diffusion). ``check``, if
    any, validates a (source, target) pair before anything runs (batch mode checks every row
    first)."""

    run: Callable[[Call], tuple[Any, int]]
    about: str = ""
    has_map: bool = False
    skips: bool = False
    text_only: bool = False
    check: Callable[[Any, str, str, EditOptions], None] | None = None


def _ngdm(c: Call) -> tuple[Any, int]:
    from ..editing import ngdm

    wm = c.weighting_map()
    res = ngdm(
        c.m.denoiser, c.x0, c.m.process, c.grid, wm.lam, cond=c.tgt, eta=c.o.eta,
        generator=c.g, preserve=c.o.preserve, **c.guide,
    )  # fmt: skip
    return res, wm.nfe


def _ngdm_ef(c: Call) -> tuple[Any, int]:
    from ..editing import ngdm_edit_friendly

    wm = c.weighting_map()
    inv = c.ef_invert()
    res = ngdm_edit_friendly(
        c.m.denoiser, inv, c.m.process, wm.lam, cond=c.tgt, preserve=c.o.preserve, **c.guide
    )
    return res, wm.nfe + c.o.steps


def _ef(c: Call) -> tuple[Any, int]:
    from ..inversion import edit_friendly_regenerate

    inv = c.ef_invert()
    res = edit_friendly_regenerate(
        c.m.denoiser, inv, c.m.process, cond=c.tgt, skip=c.o.skip, **c.guide
    )
    return res, c.o.steps


def _cycle(c: Call) -> tuple[Any, int]:
    from ..inversion import cycle_edit, cycle_invert

    inv = cycle_invert(
        c.m.denoiser, c.x0, c.m.process, c.grid, cond=c.src, eta=c.o.eta, generator=c.g,
        **c.src_guide,
    )  # fmt: skip
    return cycle_edit(c.m.denoiser, inv, c.m.process, cond=c.tgt, skip=c.o.skip, **c.guide), (
        c.o.steps
    )


def _ddim(c: Call) -> tuple[Any, int]:
    from ..inversion import ddim_edit, ddim_invert

    inv = ddim_invert(c.m.denoiser, c.x0, c.m.process, c.grid, cond=c.src, **c.src_guide)
    res = ddim_edit(c.m.denoiser, inv, c.m.process, cond=c.tgt, skip=c.o.skip, **c.guide)
    return res, inv.nfe


def _sdedit(c: Call) -> tuple[Any, int]:
    from ..editing import sdedit

    res = sdedit(
        c.m.denoiser, c.x0, c.m.process, c.grid, strength=c.o.strength, cond=c.tgt,
        eta=c.o.eta, generator=c.g, **c.guide,
    )  # fmt: skip
    return res, 0


def _ilvr(c: Call) -> tuple[Any, int]:
    from ..editing import ilvr

    res = ilvr(
        c.m.denoiser, c.x0, c.m.process, c.grid, factor=c.o.factor, cond=c.tgt, eta=c.o.eta,
        generator=c.g, **c.guide,
    )  # fmt: skip
    return res, 0


def _diffedit(c: Call) -> tuple[Any, int]:
    from ..editing import diffedit

    o = c.o
    res = diffedit(
        c.m.denoiser, c.x0, c.m.process, c.grid, source_cond=c.src, target_cond=c.tgt,
        strength=o.strength, mask_strength=o.map_strength, mask_n=o.map_n,
        mask_threshold=o.threshold, generator=c.g, **c.guide,
    )  # fmt: skip
    return res, 0


def _p2p(c: Call) -> tuple[Any, int]:
    from ..editing import p2p_edit_friendly

    o = c.o
    source, target = c.names
    res = p2p_edit_friendly(
        c.m.sd, c.x0, source, target, grid=c.grid, skip=o.skip,
        source_guidance=o.source_guidance, guidance=o.guidance, eta=o.eta,
        cross_replace=o.cross_replace, self_replace=o.self_replace, mode=o.p2p_mode,
        reweight=dict(o.reweight) or None, generator=c.g,
    )  # fmt: skip
    return res, 0  # res.nfe already counts the inversion


def _p2p_check(m: Any, source: str, target: str, o: EditOptions) -> None:
    """The prompts must align in ``--p2p-mode`` and every re-weighted word be in the target."""
    from ..editing import p2p_token_map
    from ..models.attention import token_weights

    p2p_token_map(m.sd, source, target, o.p2p_mode)
    if o.reweight:
        token_weights(m.sd.tokenizer, target, dict(o.reweight))


#: ``--method`` NAME → :class:`Method`, in the order ``--help`` lists them. The seam for new
#: methods (module docstring).
METHODS: dict[str, Method] = {
    "ngdm": Method(_ngdm, "per-pixel start times (NGDM Alg. 1)", has_map=True),
    "ef": Method(_ef, "edit-friendly inversion", skips=True),
    "ngdm-ef": Method(_ngdm_ef, "both", has_map=True),
    "sdedit": Method(_sdedit),
    "ilvr": Method(_ilvr),
    "ddim": Method(_ddim, "DDIM inversion", skips=True),
    "cycle": Method(_cycle, "CycleDiffusion", skips=True),
    "diffedit": Method(_diffedit, has_map=True),
    "p2p": Method(
        _p2p, "Prompt-to-Prompt + EF inversion (SD)", skips=True, text_only=True, check=_p2p_check
    ),
}


def check_method(m: Any, method: str, source: str, target: str, **opts: Any) -> None:
    """Raise ``ValueError`` if ``method`` cannot edit ``source`` into ``target`` (no-op for
    methods without a check)."""
    check = METHODS[method].check
    if check is not None:
        check(m, source, target, EditOptions(**opts))


def run_method(
    m: Any,
    x0: Tensor,
    method: str,
    src: Any,
    tgt: Any,
    *,
    seed: int,
    names: tuple[str | None, str | None] = (None, None),
    **opts: Any,
) -> tuple[Any, int]:
    """Run ``method`` on ``x0`` with :class:`EditOptions` ``opts``; returns its ``EditResult``
    and the model calls spent outside it. ``names`` are the source and target prompts (what
    ``src``/``tgt`` encode; Prompt-to-Prompt aligns their words). Every random draw comes from
    one generator seeded with ``seed`` on the model's device."""
    o = EditOptions(**opts)
    grid = m.grid(o.steps)
    g = torch.Generator(device=m.device).manual_seed(seed)
    return METHODS[method].run(Call(m, x0, src, tgt, grid, g, o, names))
