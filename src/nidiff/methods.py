r"""Every editing method by name: the one registry the CLI, the benchmarks, the overhead counter
and the studio read.

A :class:`MethodInfo` row says what a method is (its label in tables, what it needs and
returns), which options apply to it (an option given to a method it does not apply to is an
error, not a silent no-op) and runs it on a :class:`~nidiff.models.space.ModelSpace`:

.. code-block:: python

    info = METHODS["ef"]
    res, extra_nfe = info.run(EditCall(space, x0, src, tgt, space.grid(50), generator, opts))

**Defaults** live beside it in :mod:`nidiff.defaults` (re-exported here): nidiff's pixel
defaults chosen from the editing benchmark (:data:`PIXEL_DEFAULTS`), the papers' settings for
latent text-to-image models, and :func:`method_defaults`, which resolves them.

**Adding a method**: write ``def run_name(c: EditCall) -> tuple[EditResult, int]`` (and a
check, if its input can be refused up front) in :mod:`nidiff.method_runs` and add a row to
:data:`METHODS`; ``--method`` choices, its help, the option checks and the benchmarks' lists
follow from the table.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from .defaults import (
    EF_PAPER,
    FLOWEDIT_PAPER,
    P2P_PAPER,
    PIXEL_DEFAULTS,
    PNP_EF,
    PNP_PAPER,
    SD_GUIDANCE,
    SKIP_FRAC,
    STRENGTH,
    STROKES_EP,
    ZERO_SHOT_DDIM_PAPER,
    ZERO_SHOT_PAPER,
    default_factor,
    method_defaults,
)
from .method_runs import (
    check_flow,
    check_p2p,
    check_pixels,
    check_pnp,
    check_zero_shot,
    run_cycle,
    run_ddim,
    run_diffedit,
    run_ef,
    run_flowedit,
    run_ilvr,
    run_ngdm,
    run_ngdm_ef,
    run_p2p,
    run_pnp,
    run_sdedit,
    run_strokes,
    run_zero_shot,
    run_zero_shot_ddim,
)

__all__ = [
    "EF_PAPER",
    "FLOWEDIT_PAPER",
    "MAP_MODES",
    "METHODS",
    "OPTION_NAMES",
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
    "EditCall",
    "EditOptions",
    "MethodInfo",
    "check_conditions",
    "check_options",
    "default_factor",
    "method_defaults",
    "unconditional_methods",
]


@dataclass(frozen=True)
class EditOptions:
    """The numeric options of one edit (the CLI's ``--steps`` … ``--reweight``)."""

    steps: int = 50
    guidance: float = 3.0
    grid_shift: float = 1.0  # the model's grid moved toward high noise (1: as it is)
    source_guidance: float = 1.0
    eta: float | None = 1.0  # None: the sampler's own (when ``sampler`` is named)
    sampler: str | None = None  # None: the process's own rule with ``eta``
    skip: int = 15
    strength: float = 0.5
    factor: int = 4
    map_n: int = 10
    map_strength: float = 0.5
    map_mode: str = "replace"  # a user's map (EditCall.user_map): instead of, or times, NGDM's
    threshold: float = 0.5
    preserve: bool = False
    cross_replace: float = 0.6
    self_replace: float = 0.2
    p2p_mode: str = "replace"
    reweight: tuple[tuple[str, float], ...] = ()
    feature_replace: float = PNP_PAPER["feature_replace"]
    xa_guidance: float | None = None  # None: the method's paper value (ZERO_SHOT_*PAPER)
    noise_reg_steps: int = ZERO_SHOT_DDIM_PAPER["noise_reg_steps"]
    inversion_steps: int = PNP_PAPER["inversion_steps"]
    clusters: int = STROKES_EP["clusters"]  # strokes: k-means grey levels of the painting
    stroke_blur: float = STROKES_EP["stroke_blur"]  # strokes: pre-blur std of the painting


#: Every option name of :class:`EditOptions`.
OPTION_NAMES = tuple(f.name for f in fields(EditOptions))
#: Options every method takes.
COMMON = frozenset({"steps", "guidance", "grid_shift"})


@dataclass(frozen=True)
class EditCall:
    """One edit: a model in its space, the source ``x0`` there, the source and target
    conditions, the grid, the one generator every draw comes from, and the options."""

    space: Any
    x0: Tensor
    source: Any
    target: Any
    grid: Any
    generator: torch.Generator
    options: EditOptions
    prompts: tuple[str | None, str | None] = (None, None)
    #: A user's change map on the space's grid, ``(1, 1, *spatial)`` in ``[0, 1]`` (white = 1 =
    #: change, Differential Diffusion's convention), for the NGDM methods (``options.map_mode``).
    user_map: Tensor | None = None
    #: A user's stroke painting in the space, shaped as ``x0`` (``strokes``: instead of the
    #: k-means painting of ``x0``).
    painting: Tensor | None = None

    @property
    def guide(self) -> dict[str, Any]:
        """Target-side guidance with the model's unconditional condition."""
        return {"guidance": self.options.guidance, "null_cond": self.space.null_cond()}

    @property
    def src_guide(self) -> dict[str, Any]:
        """Inversion-side guidance (``source_guidance``)."""
        return {"guidance": self.options.source_guidance, "null_cond": self.space.null_cond()}

    def rule(self) -> Any:
        """The step rule of this edit: ``sampler`` (with ``eta`` if given), or the process's own
        rule with ``eta`` (:func:`nidiff.samplers.registry.choose_rule`)."""
        from .samplers.registry import choose_rule

        return choose_rule(self.space.process, self.options.sampler, eta=self.options.eta)

    def weighting_map(self):
        from .editing import weighting_map

        s, o = self.space, self.options
        return weighting_map(
            s.denoiser, self.x0, s.process, source_cond=self.source, target_cond=self.target,
            strength=o.map_strength, n=o.map_n, generator=self.generator,
        )  # fmt: skip

    def lam(self) -> tuple[Tensor, int]:
        """λ of the NGDM methods and the model calls it cost: the weighting map, or
        :attr:`user_map` instead of it (``map_mode="replace"``) or multiplied with it
        (``"multiply"``)."""
        mode = self.options.map_mode
        if mode not in MAP_MODES:
            raise ValueError(f"map_mode={mode!r} must be one of {MAP_MODES}")
        if self.user_map is not None and mode == "replace":
            return self.user_map.to(self.x0.device), 0
        wm = self.weighting_map()
        if self.user_map is None:
            return wm.lam, wm.nfe
        return wm.lam * self.user_map.to(wm.lam.device, wm.lam.dtype), wm.nfe

    def ef_invert(self):
        from .inversion import edit_friendly_invert

        s = self.space
        return edit_friendly_invert(
            s.denoiser, self.x0, s.process, self.grid, cond=self.source, rule=self.rule(),
            generator=self.generator, **self.src_guide,
        )  # fmt: skip


@dataclass(frozen=True)
class MethodInfo:
    """A row of :data:`METHODS`.

    Attributes:
        name: the CLI's ``--method`` name. label: the name in tables and figures.
        about: one line for ``--help``. paper: where the method is from.
        run: ``run(call) -> (EditResult, extra_nfe)``, the model calls spent outside the result.
        options: the :class:`EditOptions` that apply (besides ``steps`` and ``guidance``).
        has_map: returns a λ map or mask (``--save-map``). inverts: inverts, then regenerates
            after ``skip`` steps. text_only: needs a text-to-image latent model, ``needs`` says
            which (for messages); pixel_only: runs on pixel models only (``check`` says why).
        conditions: which of source and target it uses. With ``"source"`` the edit *is* the
            change from the source to the target (an inversion under the source, a map or mask
            of their difference), so it needs a class- or text-conditional model; without it the
            target only steers a regeneration, which runs unguided on an unconditional model
            (:meth:`required_conditions`, :func:`check_conditions`).
        check: validates a (source, target) pair up front (batch mode checks every row first).
    """

    name: str
    label: str
    about: str
    paper: str
    run: Callable[[EditCall], tuple[Any, int]]
    options: frozenset[str]
    has_map: bool = False
    inverts: bool = False
    text_only: bool = False
    pixel_only: bool = False
    conditions: tuple[str, ...] = ("source", "target")
    check: Callable[[Any, str, str, EditOptions], None] | None = None
    needs: str = "a text-to-image pipeline (--model DIR)"

    @property
    def skips(self) -> bool:
        """Whether ``skip`` applies (the inverting methods)."""
        return "skip" in self.options

    @property
    def takes_user_map(self) -> bool:
        """Whether a user's change map can be its λ (``--map``: the NGDM methods)."""
        return "map_mode" in self.options

    def required_conditions(
        self, user_map: bool = False, map_mode: str = "replace"
    ) -> tuple[str, ...]:
        """The conditions this edit cannot run without: :attr:`conditions`, less the source for
        the NGDM methods when a user's map replaces the weighting map (the only place their
        source enters)."""
        if self.takes_user_map and user_map and map_mode == "replace":
            return tuple(c for c in self.conditions if c != "source")
        return self.conditions


_MAP = frozenset({"map_n", "map_strength"})
_USER_MAP = frozenset({"map_mode"})  # the NGDM methods take a user's map (EditCall.user_map)
#: How a user's map enters NGDM's λ: instead of the weighting map, or multiplied with it.
MAP_MODES = ("replace", "multiply")
#: What the attention-controlling methods need (for messages).
_SD_NEEDS = "a Stable Diffusion pipeline (--model SD_DIR; SD 1.x/2.x)"
_STEP = frozenset({"eta", "sampler"})  # the step rule: any sampler of the registry
_INVERT = frozenset({"source_guidance", "skip"}) | _STEP

#: Every method by its ``--method`` name, in the order ``--help`` and the tables list them.
METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("ngdm", "NGDM", "per-pixel start times (NGDM Alg. 1)", "NGDM Alg. 1, Sec. 3.4",
                   run_ngdm, _MAP | _USER_MAP | _STEP | {"preserve", "strength"}, has_map=True),
        MethodInfo("ef", "EF", "edit-friendly inversion", "EF Alg. 1, Sec. 4", run_ef, _INVERT,
                   inverts=True),
        MethodInfo("ngdm-ef", "NGDM+EF", "both", "nidiff: NGDM's start times on EF maps",
                   run_ngdm_ef,
                   _MAP | _USER_MAP | _STEP | {"source_guidance", "preserve", "strength"},
                   has_map=True, inverts=True),
        MethodInfo("sdedit", "SDEdit", "", "Meng et al. 2022", run_sdedit, _STEP | {"strength"},
                   conditions=("target",)),
        MethodInfo("ilvr", "ILVR", "", "Choi et al. 2021", run_ilvr, _STEP | {"factor"},
                   conditions=("target",)),
        MethodInfo("ddim", "DDIM inv.", "DDIM inversion", "EF Table 1 baseline", run_ddim,
                   frozenset({"source_guidance", "skip"}), inverts=True),
        MethodInfo("cycle", "CycleDiff.", "CycleDiffusion", "Wu & De la Torre 2023", run_cycle,
                   frozenset({"source_guidance", "skip", "eta"}), inverts=True),
        MethodInfo("diffedit", "DiffEdit", "", "Couairon et al. 2023", run_diffedit,
                   _MAP | {"strength", "threshold"}, has_map=True),
        MethodInfo("flowedit", "FlowEdit", "inversion-free, by velocity differences (SD3, FLUX)",
                   "Kulikov et al. 2025", run_flowedit, frozenset({"source_guidance", "skip"}),
                   text_only=True, check=check_flow,
                   needs="an SD3 or FLUX pipeline (--model DIR)"),
        MethodInfo("p2p", "P2P+EF", "Prompt-to-Prompt + EF inversion (SD, SDXL)", "EF Table 3",
                   run_p2p,
                   frozenset({"source_guidance", "skip", "eta", "cross_replace", "self_replace",
                              "p2p_mode", "reweight"}),
                   inverts=True, text_only=True, check=check_p2p,
                   needs="a Stable Diffusion pipeline (--model DIR; SD 1.x/2.x or SDXL)"),
        MethodInfo("zero-shot", "Zero-Shot+EF", "Zero-Shot I2I + EF inversion (SD)",
                   "EF App. D.2, Table 4", run_zero_shot, _INVERT | {"xa_guidance"}, inverts=True,
                   text_only=True, check=check_zero_shot("zero-shot"), needs=_SD_NEEDS),
        MethodInfo("zero-shot-ddim", "Zero-Shot", "Zero-Shot I2I (pix2pix-zero) on DDIM inversion "
                   "(SD)", "Parmar et al. 2023; EF Table 4", run_zero_shot_ddim,
                   frozenset({"source_guidance", "skip", "xa_guidance", "noise_reg_steps"}),
                   inverts=True, text_only=True, check=check_zero_shot("zero-shot-ddim"),
                   needs=_SD_NEEDS),
        MethodInfo("pnp", "PnP+EF", "Plug-and-Play + EF inversion (SD)",
                   "nidiff: PnP's injections on EF maps", lambda c: run_pnp(c, "ef"),
                   _INVERT | {"feature_replace", "self_replace"}, inverts=True, text_only=True,
                   check=check_pnp("pnp"), needs=_SD_NEEDS),
        MethodInfo("pnp-ddim", "PnP", "Plug-and-Play on DDIM inversion (SD)",
                   "Tumanyan et al. 2023; EF Table 3", lambda c: run_pnp(c, "ddim"),
                   frozenset({"source_guidance", "skip", "feature_replace", "self_replace",
                              "inversion_steps"}),
                   inverts=True, text_only=True, check=check_pnp("pnp-ddim"), needs=_SD_NEEDS),
        MethodInfo("strokes", "Strokes", "SDEdit from a stroke painting (k-means of the image, or "
                   "--painting FILE)", "EP paper Sec. 5; Meng et al. 2022", run_strokes,
                   _STEP | {"strength", "clusters", "stroke_blur"}, conditions=("target",),
                   pixel_only=True, check=check_pixels),
    )
}  # fmt: skip


def unconditional_methods() -> str:
    """The methods that run on an unconditional model, in words (for messages)."""
    free = [n for n, m in METHODS.items() if "source" not in m.conditions and not m.text_only]
    mapped = [n for n, m in METHODS.items() if "source" not in m.required_conditions(True)
              and n not in free and not m.text_only]  # fmt: skip
    return f"{', '.join(free)}, or {' / '.join(mapped)} with --map FILE"


def check_conditions(
    method: str,
    *,
    conditional: bool,
    given: Collection[str],
    user_map: bool = False,
    map_mode: str = "replace",
    model: str = "the model",
) -> None:
    """The one policy of which conditions an edit needs (:meth:`MethodInfo.required_conditions`).

    ``given`` names the roles (``"source"``, ``"target"``) the user gave; ``conditional`` says
    whether the model takes classes or prompts. A conditional model needs every required
    condition; an unconditional one (trained on an image folder) takes none, and runs only the
    methods whose edit is not a source → target change: SDEdit and ILVR (unguided), NGDM and
    NGDM+EF with a user's change map in ``replace`` mode.

    Raises:
        ValueError: naming what is missing or refused and, for an unconditional model, the
            methods that work on it.
    """
    info = METHODS[method]
    required = info.required_conditions(user_map, map_mode)
    if not conditional:
        if given:
            roles = " and ".join(f"--{r}" for r in ("source", "target") if r in given)
            raise ValueError(
                f"{model} is unconditional (trained without classes): it takes no {roles}; "
                f"leave {'them' if ' and ' in roles else 'it'} out"
            )
        if "source" in required:
            what = (
                f"--method {method} without --map (or with --map-mode multiply) computes its λ "
                "from a source and a target class"
                if info.takes_user_map
                else f"--method {method} edits a source class into a target class"
            )
            inv = (" (EF reconstruction and manipulations: `nidiff invert` without --source, then "
                   "`nidiff regenerate`)")  # fmt: skip
            raise ValueError(
                f"{what}, and {model} is unconditional (trained without classes); on it use "
                f"{unconditional_methods()}"
                + (inv if info.inverts and not info.takes_user_map else "")
            )
        return
    missing = [r for r in required if r not in given]
    if missing:
        raise ValueError(
            f"--method {method} needs {' and '.join(f'--{r}' for r in missing)}: {model} is "
            f"conditional, so name the {' and the '.join(required)} as a class or prompt"
        )


def check_options(method: str, given: set[str] | frozenset[str]) -> None:
    """Raise ``ValueError`` for an option given to a method it does not apply to (naming the
    methods it applies to), instead of accepting and ignoring it."""
    info = METHODS[method]
    for name in sorted(given - COMMON - info.options):
        users = [m.name for m in METHODS.values() if name in m.options]
        raise ValueError(
            f"--{name.replace('_', '-')} does not apply to --method {method}; it applies to "
            f"{', '.join(users)}"
        )
