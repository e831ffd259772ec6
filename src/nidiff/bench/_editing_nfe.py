r"""The NFE sweep of ``nidiff bench editing``: what a total budget of network evaluations buys.

A *budget* :math:`B` is a total number of network evaluations per edited image, counted as
:mod:`nidiff.bench._editing_methods` counts them (a guided step :math:`g = 2`, the weighting map
and DiffEdit's mask :math:`2n`, an inversion step 1). For a method whose chain runs :math:`L`
steps the total is

=====================  ================================================
SDEdit, NGDM           :math:`e(L)\,g\ [+\ 2n]`
EF, DDIM inv., Cycle   :math:`L + g\,L`
NGDM+EF                :math:`L + g\,L + 2n`
DiffEdit               :math:`2n + L + g\,L`
ILVR                   :math:`e(N)\,g` (its whole grid of :math:`N` steps)
=====================  ================================================

with :math:`e(L) = aL - (a - 1)` model calls for a rule of :math:`a` evaluations per step
(Heun: 2, except its last step onto clean data; every stochastic rule has :math:`a = 1`). At a
budget each method runs the *largest* :math:`L` whose total is :math:`\le B`
(:func:`steps_for`), or :math:`L = 1` when even one step costs more (NGDM with a 10-draw map
at :math:`B = 10`: the row then reports its real, larger NFE). The benchmark checks every row's
counted evaluations against :func:`nfe_of` (``RuntimeError`` on a mismatch), so a reported NFE is
always the counted one.

**Grids.** At strength :math:`s` the edit starts at :math:`t_s = \lfloor s\,t_{max}\rfloor` (an
integer step, the same for every budget) and runs :math:`L` evenly spaced steps down to 0:
``trailing_grid(schedule, L, start=t_s)``, :math:`t_i = \mathrm{round}(t_s (L - i)/L)`,
optionally shifted toward high noise with the start fixed (:func:`~nidiff.schedule.shift_grid`
with ``top = t_s``). ILVR runs the :math:`N`-step grid from :math:`t_{max}`.
"""

from __future__ import annotations

import math

from nidiff.samplers.registry import SAMPLERS
from nidiff.schedule import DiscreteSchedule, Schedule, TimeGrid, linspace_grid, shift_grid
from nidiff.schedule.grid import trailing_grid

from ._editing_methods import METHODS, RULE_METHODS

__all__ = ["edit_grid", "nfe_of", "start_time", "steps_for"]

_MAP = frozenset({"NGDM", "NGDM+EF", "DiffEdit"})
_INVERT = frozenset({"EF", "NGDM+EF", "DDIM inv.", "CycleDiff.", "DiffEdit"})


def _calls(steps: int, per_step: int) -> int:
    """Model calls of a chain of ``steps`` steps: ``per_step`` each, one on the last (clean)."""
    return per_step * steps - (per_step - 1)


def nfe_of(method: str, steps: int, *, g: int, map_draws: int, sampler: str = "ddpm") -> int:
    """Total evaluations per image of ``method`` running ``steps`` steps (module table), with
    guidance factor ``g`` (2 when guided), ``map_draws`` draws of the map or mask and the
    sampler of the methods that take one."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose among {', '.join(METHODS)}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    per_step = SAMPLERS[sampler].evaluations if method in RULE_METHODS else 1
    chain = _calls(int(steps), per_step) * g
    invert = int(steps) if method in _INVERT else 0
    return chain + invert + (2 * map_draws if method in _MAP else 0)


def steps_for(method: str, budget: int, *, g: int, map_draws: int, sampler: str = "ddpm") -> int:
    """The largest step count whose :func:`nfe_of` is ``<= budget`` (``1`` when none is)."""
    if int(budget) != budget or budget < 1:
        raise ValueError(f"NFE budget {budget!r} must be a positive integer")
    steps = 1
    while nfe_of(method, steps + 1, g=g, map_draws=map_draws, sampler=sampler) <= budget:
        steps += 1
    return steps


def start_time(schedule: Schedule, strength: float) -> float:
    r""":math:`t_s`: ``floor(s·t_max)`` on a discrete schedule (at least step 1), ``s·t_max``
    otherwise."""
    t = float(strength) * schedule.t_max
    if isinstance(schedule, DiscreteSchedule):
        return float(max(1, math.floor(t + 1e-9 * schedule.t_max)))
    return t


def edit_grid(
    schedule: Schedule, strength: float | None, steps: int, shift: float = 1.0
) -> TimeGrid:
    """The ``steps``-step grid of an edit at ``strength`` (``None``: from ``t_max``, ILVR), evenly
    spaced from :func:`start_time` down, shifted by ``shift`` with its start fixed."""
    top = schedule.t_max if strength is None else start_time(schedule, strength)
    if isinstance(schedule, DiscreteSchedule):
        if steps > top:
            raise ValueError(
                f"{steps} steps do not fit below the start step {top:g} (strength {strength})"
            )
        grid = trailing_grid(schedule, steps, start=int(top))
    else:
        grid = linspace_grid(schedule, steps)
        grid = TimeGrid(grid.t * (top / schedule.t_max), grid.t_prev * (top / schedule.t_max))
    return shift_grid(grid, schedule, shift, top=top)
