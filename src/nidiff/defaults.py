"""Default options of the editing methods: one home for them (the CLI, the studio, the demo
and the benchmarks read them through :func:`method_defaults`).

On nidiff's pixel models the defaults are the editing benchmark's choices
(:data:`PIXEL_DEFAULTS`); on latent text-to-image models the papers' own settings
(:data:`EF_PAPER`, :data:`P2P_PAPER`, :data:`ZERO_SHOT_PAPER`, :data:`ZERO_SHOT_DDIM_PAPER`,
:data:`PNP_PAPER`; :data:`PNP_EF` is ours) and Stable Diffusion's guidance for the rest; on the
other pipeline families each family's own (:data:`nidiff.models.families.FAMILIES`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EF_PAPER",
    "FLOWEDIT_PAPER",
    "P2P_PAPER",
    "PIXEL_DEFAULTS",
    "PNP_EF",
    "PNP_PAPER",
    "SD_GUIDANCE",
    "SKIP_FRAC",
    "STRENGTH",
    "STROKES_EP",
    "ZERO_SHOT_DDIM_PAPER",
    "ZERO_SHOT_PAPER",
    "default_factor",
    "method_defaults",
]

#: EF defaults for Stable Diffusion (Huberman-Spiegelglas et al. 2024, Sec. 6): 100 steps,
#: η = 1, source guidance 3.5, target guidance 15, skip 36 of 100 (scaled: 0.36 × steps).
EF_PAPER: dict[str, Any] = {
    "steps": 100,
    "eta": 1.0,
    "source_guidance": 3.5,
    "guidance": 15.0,
    "skip_frac": 0.36,
}
#: P2P + EF defaults (EF paper, Table 3 "P2P + Our inv."): the EF settings with target guidance
#: 9 and skip 12 of 100; cross-attention replaced during 60 % and self-attention injected during
#: 20 % of the steps run.
P2P_PAPER: dict[str, Any] = {**EF_PAPER, "guidance": 9.0, "skip_frac": 0.12}
#: Zero-Shot I2I + EF ("Zero-Shot+Our", EF paper App. D.2, Table 4): 50 steps, guidance 7.5,
#: T_skip 0, cross-attention guidance λ_xa 0.03, inversion guidance 3.5 (η 1).
ZERO_SHOT_PAPER: dict[str, Any] = {
    "steps": 50, "eta": 1.0, "source_guidance": 3.5, "guidance": 7.5, "skip_frac": 0.0,
    "xa_guidance": 0.03,
}  # fmt: skip
#: Zero-Shot I2I on its own DDIM inversion (pix2pix-zero; EF paper Table 4 "Zero-Shot"): the same
#: with λ_xa 0.1, inversion guidance 1 and 5 rounds of pix2pix-zero's noise regularization.
ZERO_SHOT_DDIM_PAPER: dict[str, Any] = {
    **ZERO_SHOT_PAPER, "source_guidance": 1.0, "xa_guidance": 0.1, "noise_reg_steps": 5,
}  # fmt: skip
#: Plug-and-Play on DDIM inversion (EF paper Table 3 "PnP", the authors' defaults): 1000
#: inversion steps at guidance 1, 50 edit steps at guidance 10, T_skip 0, features injected
#: during 40 and self-attention during 25 of the 50 steps.
PNP_PAPER: dict[str, Any] = {
    "steps": 50, "source_guidance": 1.0, "guidance": 10.0, "skip_frac": 0.0,
    "feature_replace": 0.8, "self_replace": 0.5, "inversion_steps": 1000,
}  # fmt: skip
#: Plug-and-Play on EF maps (nidiff's; no paper runs it): PnP's edit settings, EF's inversion
#: (guidance 3.5, η 1) on the edit grid.
PNP_EF: dict[str, Any] = {
    **{k: v for k, v in PNP_PAPER.items() if k != "inversion_steps"}, "source_guidance": 3.5,
    "eta": 1.0,
}  # fmt: skip
#: FlowEdit's settings (Kulikov et al. 2025, their code): steps, n_max = steps - skip, source
#: and target guidance, per family.
FLOWEDIT_PAPER: dict[str, dict[str, Any]] = {
    "sd3": {"steps": 50, "skip_frac": 17 / 50, "source_guidance": 3.5, "guidance": 13.5},
    "flux": {"steps": 28, "skip_frac": 4 / 28, "source_guidance": 1.5, "guidance": 5.5},
}
#: The guidance scale of Stable Diffusion's own pipeline, for the other methods on SD.
SD_GUIDANCE = 7.5
#: Defaults on latent (text-to-image) models, where no benchmark of ours applies: skip as a
#: fraction of the steps, strengths per method (NGDM, NGDM+EF: 1, the grid's top, the paper's).
SKIP_FRAC = 0.3
STRENGTH = {"sdedit": 0.6, "diffedit": 0.5}
#: nidiff's defaults on its pixel models, each the point of the method's curve in the editing
#: benchmark (``nidiff bench editing``, 20 steps, 3 class pairs pooled, 12 images per pair) with
#: target accuracy >= 0.9 at the lowest guidance that reaches it and the best fidelity (SSIM, then
#: background PSNR), or the most accurate point where none reaches 0.9: the rule of
#: :mod:`nidiff.bench.editing_defaults` on ``docs/results/editing-defaults-cpu-g{3,5}.json``
#: (RESULTS.md, "Default settings of nidiff edit"). The benchmark's strength s starts every
#: method at the first grid time <= s·t_max: ``strength`` s itself (SDEdit, NGDM, NGDM+EF,
#: DiffEdit), ``skip_frac`` = 1 - s for the inverting methods (on the leading grid
#: round((1 - s)·steps) is exactly that index); ``factor_frac``: ILVR's factor as a fraction of
#: the image side (:func:`default_factor`; the benchmark's N = 14 of 28).
#: NGDM+EF, DDIM inversion and DiffEdit miss 0.9 at guidance 3 (at best 0.889, 0.778 and 0.444);
#: DiffEdit reaches 0.50 at best at guidance 5 (its mask, not its strength, limits it).
PIXEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "sdedit": {"strength": 0.5},
    "ngdm": {"strength": 0.7},
    "ef": {"skip_frac": 0.4},
    "ngdm-ef": {"strength": 0.7, "guidance": 5.0},
    "ddim": {"skip_frac": 0.4, "guidance": 5.0},
    "cycle": {"skip_frac": 0.4},
    "diffedit": {"strength": 0.7, "guidance": 5.0},
    "ilvr": {"factor_frac": 0.5},
}
#: Stroke-guided editing (``strokes``) on pixel models: the settings of ``nidiff bench edge``'s
#: stroke SDEdit (:class:`nidiff.bench.edge.Preset`): hijack time h = 0.55 (the EP paper's, its
#: first hijack), paintings of k-means ``clusters = 4`` grey levels after a Gaussian pre-blur
#: of std ``stroke_blur = 1`` pixel. Not in :data:`PIXEL_DEFAULTS`: the editing benchmark
#: does not run it (:data:`nidiff.bench._editing_methods.EXCLUDED`).
STROKES_EP: dict[str, Any] = {"strength": 0.55, "clusters": 4, "stroke_blur": 1.0}


def method_defaults(
    method: str,
    latent: bool,
    family: str | None = None,
    space: Any = None,
    conditional: bool = True,
) -> dict[str, Any]:
    """Option defaults of ``method`` that differ from :class:`~nidiff.methods.EditOptions`' own:
    for latent text-to-image models the papers' settings for ``ef``, ``p2p``, ``zero-shot``,
    ``zero-shot-ddim``, ``pnp`` and ``pnp-ddim`` (:data:`EF_PAPER`, :data:`P2P_PAPER`,
    :data:`ZERO_SHOT_PAPER`, :data:`ZERO_SHOT_DDIM_PAPER`, :data:`PNP_EF`, :data:`PNP_PAPER`)
    and Stable Diffusion's guidance 7.5 for the rest; on pixel models
    the editing benchmark's choices (:data:`PIXEL_DEFAULTS`; ``strokes``: the edge benchmark's,
    :data:`STROKES_EP`). ``skip_frac`` is the default
    ``skip`` as a fraction of ``steps``, ``factor_frac`` ILVR's default factor as a fraction of
    the image side (:func:`default_factor`).
    ``method="sample"`` gives the defaults of plain sampling (Stable Diffusion: guidance 7.5).

    ``family`` (a name of :data:`nidiff.models.families.FAMILIES` other than ``sd``): that
    family's guidance (``space.default_guidance`` when the loaded adapter has one, e.g. 1 for
    FLUX without a guidance embedding), inversion guidance and steps for every method (the EF
    paper's settings are Stable Diffusion's); for ``sample`` also the sampler equal to the
    pipeline's scheduler (:func:`~nidiff.models.families.pipeline_sampler`).

    ``conditional=False`` (a model trained without classes): guidance 1, i.e. none (there is no
    condition to steer toward)."""
    from .methods import METHODS  # the registry imports these defaults

    if family not in (None, "sd"):
        from .models.families import FAMILIES, pipeline_sampler

        fam = FAMILIES[family]
        common = {"guidance": float(getattr(space, "default_guidance", fam.guidance)),
                  "steps": fam.steps}  # fmt: skip
        if method == "sample":
            return common | {"sampler": pipeline_sampler(space, fam)}
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
        out = common | {
            "skip_frac": SKIP_FRAC, "strength": STRENGTH.get(method, 1.0),
            "source_guidance": fam.source_guidance,
        }  # fmt: skip
        return out | (FLOWEDIT_PAPER.get(family, {}) if method == "flowedit" else {})
    if method == "sample":
        return {"guidance": SD_GUIDANCE} if latent else {}
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    out: dict[str, Any] = {"skip_frac": SKIP_FRAC, "strength": STRENGTH.get(method, 1.0)}
    if latent:
        out |= _LATENT_PAPERS.get(method, {"guidance": SD_GUIDANCE})
    else:
        out |= PIXEL_DEFAULTS.get(method, {})
        if method == "strokes":
            out |= STROKES_EP
    if not conditional:
        out |= {"guidance": 1.0, "source_guidance": 1.0}
    return out


#: The papers' settings of the methods that have them, on Stable Diffusion.
_LATENT_PAPERS: dict[str, dict[str, Any]] = {
    "ef": EF_PAPER, "p2p": P2P_PAPER, "zero-shot": ZERO_SHOT_PAPER,
    "zero-shot-ddim": ZERO_SHOT_DDIM_PAPER, "pnp": PNP_EF, "pnp-ddim": PNP_PAPER,
}  # fmt: skip


def default_factor(side: int, frac: float) -> int:
    """ILVR's default factor on a ``side``-pixel grid: the largest divisor of ``side`` at most
    ``frac``·side (:data:`PIXEL_DEFAULTS`; 14 on the 28² models at 0.5)."""
    return max(d for d in range(1, side + 1) if side % d == 0 and d <= max(1, frac * side))
