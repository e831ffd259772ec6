r"""The edits of ``nidiff bench editing``: each method at each setting of its sweep, and its cost.

One :class:`Task` is one source → target pair: a batch ``x0`` of source images, the bundled
model wrapped in a :class:`~nidiff.bench.overhead.CountingModel`, the linspace grid of ``N``
steps and the target guidance ``w``. For a strength :math:`s` the *sub-grid* is
``grid[k:]`` with :math:`k` = :func:`~nidiff.editing.sdedit.start_index` (the first grid time
:math:`t_k \le s\,t_{max}`), so every strength-swept method starts at the same time :math:`t_k`
and runs the same :math:`L = N - k` steps:

=============  ===============================================================================
SDEdit         :func:`~nidiff.editing.sdedit` at strength :math:`s` (DDPM η = 1)
NGDM           :func:`~nidiff.editing.ngdm` on ``grid[k:]`` with λ of the weighting map
               (:func:`~nidiff.editing.weighting_map`, paper defaults a = 10, b = 5, noise at
               0.5 t_max, σ = 1; ``map_draws`` draws), DDPM η = 1, no pasting (the paper's)
EF             :func:`~nidiff.inversion.edit_friendly_invert` of the source on ``grid[k:]`` (source
               class, unguided), regenerated with the target class (EF with
               :math:`T_{skip} = k` of an ``N``-step inversion: EF's states are independent
               forward draws, so its maps from :math:`t_k` on are these, given the same draws)
NGDM+EF        :func:`~nidiff.editing.ngdm_edit_friendly` of that inversion with NGDM's λ
DDIM inv.      :func:`~nidiff.inversion.ddim_invert` on ``grid[k:]`` + :func:`ddim_edit`
CycleDiff.     :func:`~nidiff.inversion.cycle_invert` on ``grid[k:]`` + :func:`cycle_edit`
DiffEdit       :func:`~nidiff.editing.diffedit` at encoding ratio :math:`s` with its binary mask
               (:func:`~nidiff.editing.diffedit_mask`: ``map_draws`` draws, threshold 0.5,
               clamp 3)
ILVR           :func:`~nidiff.editing.ilvr` from the prior over all ``N`` steps, swept over the
               down-sampling factor (larger keeps less of the source)
=============  ===============================================================================

Every generation with the target class uses classifier-free guidance ``w``; inversions and the
two maps are unguided (guidance would cancel in the maps' min-max normalisation: both
predictions are guided, so their difference is :math:`w(\hat\varepsilon_R - \hat\varepsilon_Q)`).

**Cost.** Work that several settings share — the weighting map (NGDM, NGDM+EF), DiffEdit's mask,
the EF inversion at a strength (EF, NGDM+EF) — runs once and is *charged in full to every
setting that uses it*, so each setting's NFE and seconds are those of a standalone edit. NFE
counts network evaluations per image: model calls × their batch ÷ images, so a guided step
counts 2 (conditional and unconditional predictions in one call of batch 2B) and the map
``2 n``. With ``g = 2`` for ``w != 1`` (else 1): SDEdit ``gL``; NGDM ``gL + 2n``; EF, DDIM
inv., CycleDiff. ``L + gL``; NGDM+EF ``L + gL + 2n``; DiffEdit ``2n + L + gL``; ILVR ``gN``.

**Step rule.** SDEdit, NGDM, EF, NGDM+EF and ILVR (the methods whose
:data:`nidiff.methods.METHODS` options include ``sampler``) step with ``Task.rule``: ``None``
is their own DDPM (η = 1), exactly as before the field existed; any other rule of
:data:`~nidiff.samplers.registry.SAMPLERS` (``process.sampler(name)``) replaces it (EF and
NGDM+EF record its noise). DDIM inversion, CycleDiffusion and DiffEdit keep their own rules.

**NFE sweep.** ``run_methods(..., grids=)`` gives each method its own grid per strength instead
of ``grid[k:]`` (:mod:`nidiff.bench._editing_nfe`: the step count a total NFE allows); the EF
inversion is shared with NGDM+EF only where their grids are equal.

**Seeds.** Every stochastic call takes its own ``torch.Generator`` seeded with
:func:`seed_of` (``base + 10⁴·pair + 100·method + setting``; the method codes are
:data:`SEED_CODES`). SDEdit and NGDM at the same strength share their seed (common random
numbers: with λ ≡ 1 NGDM would reproduce SDEdit exactly, so their difference is the map's).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from nidiff.editing import (
    diffedit,
    diffedit_mask,
    ilvr,
    ngdm,
    ngdm_edit_friendly,
    sdedit,
    weighting_map,
)
from nidiff.editing.sdedit import start_index
from nidiff.inversion import (
    cycle_edit,
    cycle_invert,
    ddim_edit,
    ddim_invert,
    edit_friendly_invert,
    edit_friendly_regenerate,
)
from nidiff.methods import METHODS as REGISTRY
from nidiff.process import Process
from nidiff.schedule import TimeGrid

from ._device import timed
from .overhead import CountingModel

__all__ = [
    "BENCH_METHODS",
    "EXCLUDED",
    "METHODS",
    "RULE_METHODS",
    "SEED_CODES",
    "Edit",
    "Task",
    "run_methods",
    "seed_of",
]

#: The registry's methods this benchmark runs (every pixel-space method), in table order.
BENCH_METHODS = ("sdedit", "ngdm", "ef", "ngdm-ef", "ddim", "cycle", "diffedit", "ilvr")
#: The registry's pixel-space methods it does not run, each with the reason (the registry test
#: checks that every pixel-space method is run or listed here).
EXCLUDED = {
    "strokes": "edits a stroke painting of the source, not its class: a source → target sweep "
    "does not measure it; nidiff bench edge does (EP paper, stroke SDEdit)",
}
#: Their display names, from the one registry (:data:`nidiff.methods.METHODS`).
METHODS = tuple(REGISTRY[name].label for name in BENCH_METHODS)
#: Seed code of each stochastic call (see :func:`seed_of`); ``map study`` draws the reference
#: maps of the weighting-map study (:mod:`nidiff.bench._editing_map`).
SEED_CODES = {
    "map": 1, "mask": 2, "SDEdit": 3, "NGDM": 3, "EF": 5, "CycleDiff.": 6, "ILVR": 7,
    "map study": 8,
}  # fmt: skip
#: The methods that step with ``Task.rule`` (their registry options include ``sampler``).
RULE_METHODS = tuple(
    REGISTRY[name].label for name in BENCH_METHODS if "sampler" in REGISTRY[name].options
)
#: ``grids(method, strength) -> TimeGrid``: a method's grid at a strength (``None``: ILVR's).
Grids = Callable[[str, float | None], TimeGrid]


def seed_of(base: int, pair: int, what: str, setting: int) -> int:
    """The seed of call ``what`` (a :data:`SEED_CODES` key) at sweep index ``setting`` of pair
    index ``pair``: ``base + 10_000 * pair + 100 * SEED_CODES[what] + setting``."""
    if not 0 <= setting < 100:
        raise ValueError(f"sweep index {setting} must be < 100")
    return base + 10_000 * pair + 100 * SEED_CODES[what] + setting


@dataclass(frozen=True)
class Task:
    """One pair's batch and everything the methods share."""

    model: CountingModel
    process: Process
    grid: TimeGrid
    x0: Tensor  # (B, 1, H, W) sources on the device
    source: Tensor  # (B,) source class
    target: Tensor  # (B,) target class
    guidance: float
    null_cond: Tensor
    map_draws: int
    seed_base: int  # preset seed + 10**6 * repeat
    pair: int  # pair index (for seed_of)
    rule: Any = None  # the step rule of RULE_METHODS; None: their own DDPM (eta = 1)
    #: work shared by every call of run_methods on this task (the map, the mask), made once
    shared: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Edit:
    """One (method, setting) over the whole batch."""

    method: str
    setting: str
    param: float  # strength s, or ILVR's factor
    x: Tensor  # (B, 1, H, W) edits on the CPU, clamped to [-1, 1]
    nfe: int  # network evaluations (calls × batch) over the batch, shared work included
    seconds: float  # wall time, shared work included
    seed: int | None
    t_start: float
    steps: int  # steps of the edit's own chain (the sub-grid; ILVR: the whole grid)


@dataclass(frozen=True)
class _Cost:
    nfe: int
    seconds: float

    def __add__(self, other: _Cost) -> _Cost:
        return _Cost(self.nfe + other.nfe, self.seconds + other.seconds)


def _timed(task: Task, fn: Callable[..., Any], *args: Any, **kw: Any) -> tuple[Any, _Cost]:
    """``fn(*args, **kw)`` with the network evaluations (calls × batch) and wall seconds it took."""
    counter = task.model
    counter.batches.clear()
    out, seconds = timed(counter.device, fn, *args, **kw)
    return out, _Cost(sum(b * n for b, n in counter.batches.items()), seconds)


def _gen(task: Task, what: str, j: int) -> tuple[torch.Generator, int]:
    seed = seed_of(task.seed_base, task.pair, what, j)
    return torch.Generator(device=task.x0.device).manual_seed(seed), seed


def _once(task: Task, key: str, make: Callable[[], Any]) -> Any:
    """``make()`` the first time ``key`` is asked for on ``task``, its stored result after."""
    if key not in task.shared:
        task.shared[key] = make()
    return task.shared[key]


def _ef_invert(task: Task, on: TimeGrid, j: int, done: dict) -> tuple[Any, _Cost, int]:
    """EF's inversion of the sources on ``on`` (seed ``EF`` at sweep index ``j``), made once
    per grid and kept in ``done``."""
    key = tuple(on.t.tolist())
    if key not in done:
        g, seed = _gen(task, "EF", j)
        step = {} if task.rule is None else {"rule": task.rule}
        inv, cost = _timed(task, edit_friendly_invert, task.model, task.x0, task.process, on,
                           cond=task.source, generator=g, **step)  # fmt: skip
        done[key] = (inv, cost, seed)
    return done[key]


def run_methods(
    task: Task,
    strengths: tuple[float, ...],
    factors: tuple[int, ...],
    methods: Collection[str] = METHODS,
    *,
    grids: Grids | None = None,
    suffix: str = "",
) -> Iterator[Edit]:
    """Every method of ``methods`` (default all) at every setting, strength-major (then ILVR by
    factor); see the module. Shared work runs only when a chosen method needs it, once per task.

    ``grids`` (the NFE sweep) gives each method its grid at a strength, starting at or below
    ``s·t_max`` (ILVR: ``grids("ILVR", None)``); without it every method runs ``grid[k:]``.
    ``suffix`` is appended to every setting label."""
    x0, proc, grid, net = task.x0, task.process, task.grid, task.model
    src, tgt = task.source, task.target
    guide = {"guidance": task.guidance, "null_cond": task.null_cond}
    pair = {"source_cond": src, "target_cond": tgt}
    step = {} if task.rule is None else {"rule": task.rule}
    want = set(methods)

    def edit(method: str, label: str, p: float, res: Any, cost: _Cost, seed, sub) -> Edit:
        x = res.x0.detach().clamp(-1, 1).cpu()
        t0 = float(sub.t[0])
        return Edit(method, label + suffix, p, x, cost.nfe, cost.seconds, seed, t0, len(sub))

    if want & {"NGDM", "NGDM+EF"}:
        g, _ = _gen(task, "map", 0)
        wm, map_cost = _once(task, "map", lambda: _timed(
            task, weighting_map, net, x0, proc, **pair, n=task.map_draws, generator=g))  # fmt: skip
    if "DiffEdit" in want:
        g, mask_seed = _gen(task, "mask", 0)
        mask, mask_cost = _once(task, "mask", lambda: _timed(
            task, diffedit_mask, net, x0, proc, **pair, n=task.map_draws, generator=g))  # fmt: skip
    for j, s in enumerate(strengths):
        label = f"s = {s:g}"
        if grids is None:
            k = start_index(grid, s, proc.schedule.t_max)
            sub = grid[k:]

            def sub_of(method: str, sub: TimeGrid = sub) -> TimeGrid:
                return sub

            full = grid  # SDEdit and DiffEdit find k themselves
        else:

            def sub_of(method: str, s: float = s) -> TimeGrid:
                return grids(method, s)

            full = None

        if "SDEdit" in want:
            g, seed = _gen(task, "SDEdit", j)
            on = sub_of("SDEdit") if full is None else full
            res, cost = _timed(task, sdedit, net, x0, proc, on, strength=s, cond=tgt,
                               generator=g, **guide, **step)  # fmt: skip
            yield edit("SDEdit", label, s, res, cost, seed, sub_of("SDEdit"))

        if "NGDM" in want:
            g, seed = _gen(task, "NGDM", j)  # = SDEdit's seed (common random numbers)
            on = sub_of("NGDM")
            res, cost = _timed(task, ngdm, net, x0, proc, on, wm.lam, cond=tgt, generator=g,
                               **guide, **step)  # fmt: skip
            yield edit("NGDM", label, s, res, cost + map_cost, seed, on)

        if want & {"EF", "NGDM+EF"}:
            inverted: dict[tuple, tuple] = {}  # EF's inversion, shared where the grids agree
            if "EF" in want:
                on = sub_of("EF")
                inv, inv_cost, seed = _ef_invert(task, on, j, inverted)
                res, cost = _timed(task, edit_friendly_regenerate, net, inv, proc, cond=tgt,
                                   **guide)  # fmt: skip
                yield edit("EF", label, s, res, cost + inv_cost, seed, on)
            if "NGDM+EF" in want:
                on = sub_of("NGDM+EF")
                inv, inv_cost, seed = _ef_invert(task, on, j, inverted)
                res, cost = _timed(task, ngdm_edit_friendly, net, inv, proc, wm.lam, cond=tgt,
                                   **guide)  # fmt: skip
                yield edit("NGDM+EF", label, s, res, cost + inv_cost + map_cost, seed, on)
            del inverted

        if "DDIM inv." in want:
            on = sub_of("DDIM inv.")
            dinv, inv_cost = _timed(task, ddim_invert, net, x0, proc, on, cond=src)
            res, cost = _timed(task, ddim_edit, net, dinv, proc, cond=tgt, **guide)
            yield edit("DDIM inv.", label, s, res, cost + inv_cost, None, on)

        if "CycleDiff." in want:
            g, seed = _gen(task, "CycleDiff.", j)
            on = sub_of("CycleDiff.")
            cinv, inv_cost = _timed(task, cycle_invert, net, x0, proc, on, cond=src,
                                    generator=g)  # fmt: skip
            res, cost = _timed(task, cycle_edit, net, cinv, proc, cond=tgt, **guide)
            yield edit("CycleDiff.", label, s, res, cost + inv_cost, seed, on)

        if "DiffEdit" in want:
            on = sub_of("DiffEdit") if full is None else full
            res, cost = _timed(task, diffedit, net, x0, proc, on, **pair, mask=mask,
                               strength=s, **guide)  # fmt: skip
            yield edit("DiffEdit", label, s, res, cost + mask_cost, mask_seed,
                       sub_of("DiffEdit"))  # fmt: skip
    if "ILVR" in want:
        on = grid if grids is None else grids("ILVR", None)
        for j, f in enumerate(factors):
            g, seed = _gen(task, "ILVR", j)
            res, cost = _timed(task, ilvr, net, x0, proc, on, factor=f, cond=tgt, generator=g,
                               **guide, **step)  # fmt: skip
            yield edit("ILVR", f"N = {f}", float(f), res, cost, seed, on)
