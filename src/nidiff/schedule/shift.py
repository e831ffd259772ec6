r"""Grids shifted toward high noise, for few-step inversion and editing (any schedule).

SD3 samples rectified flow on a *shifted* grid, :math:`\sigma \mapsto s\sigma/(1 + (s-1)\sigma)`
(:func:`~nidiff.schedule.flow.static_shift`), which spends more of few steps at high noise.
TurboEdit (Deutch et al., 2024, Sec. 4) traces the artefacts of few-step edit-friendly inversion
to noise statistics that lag the schedule and corrects them by moving the times toward higher
noise. :func:`shift_grid` is that move as a map of a grid, on any schedule: with the normalised
time :math:`u = t/t_{max} \in [0, 1]`,

.. math:: u \mapsto \frac{s\,u}{1 + (s - 1)\,u}, \qquad s > 0,

which keeps :math:`u = 0` (clean data) and :math:`u = 1` (the noisiest time) fixed, is strictly
increasing (so a grid stays a grid) and moves every inner time toward :math:`t_{max}` for
:math:`s > 1` (toward clean data for :math:`s < 1`). On rectified flow (:math:`t = \sigma`) it is
SD3's static shift itself; on a VP schedule it is the same map of the time axis (ours: the
schedule's log-SNR at the shifted times follows from the schedule, not from a formula).
TurboEdit's own correction offsets the *model's* time from the noise level of the drawn state
(by 200 of 1,000 steps on SDXL-Turbo); here the grid moves and every step stays a step of the
process, so inversion and regeneration stay exact.

An edit that starts below :math:`t_{max}` (SDEdit's strength, EF's skip, an NGDM sub-grid) keeps
its start with ``top``: :math:`u = t/t_{top}`, so the steps move toward its start time and the
strength of the edit stays what it was.

On a :class:`~nidiff.schedule.DiscreteSchedule` the shifted times are rounded to integer steps
(``>= 1``); a shift that makes two of them collide is refused (fewer steps or a smaller shift).
"""

from __future__ import annotations

import math

import torch

from .base import Schedule
from .discrete import DiscreteSchedule
from .grid import TimeGrid

__all__ = ["check_shift", "shift_grid", "shift_times"]


def check_shift(shift: float) -> float:
    """``shift`` as a float; ``ValueError`` unless it is a finite number ``> 0``."""
    if isinstance(shift, bool) or not isinstance(shift, int | float):
        raise ValueError(f"shift={shift!r} must be a finite number > 0")
    if not (math.isfinite(shift) and shift > 0):
        raise ValueError(f"shift={shift!r} must be a finite number > 0")
    return float(shift)


def shift_times(t: torch.Tensor, shift: float, top: float) -> torch.Tensor:
    r"""Times ``t`` (float64) moved by the shift: :math:`t_{top}\,s u/(1 + (s-1)u)`,
    :math:`u = t/t_{top}` (module docs); ``shift = 1`` returns ``t`` unchanged."""
    s = check_shift(shift)
    if s == 1.0:
        return t
    u = t.to(torch.float64) / top
    return top * (s * u / (1 + (s - 1) * u))


def shift_grid(
    grid: TimeGrid, schedule: Schedule, shift: float, *, top: float | None = None
) -> TimeGrid:
    r"""``grid`` with every time moved toward high noise by ``shift`` (module docs).

    Args:
        grid: any grid of ``schedule`` (its times in ``[0, top]``).
        schedule: the process's schedule (``t_max``; integer steps when discrete).
        shift: :math:`s > 0`; ``1`` returns ``grid`` itself, ``> 1`` moves toward noise.
        top: the time that stays fixed with 0 (default ``t_max``; an edit's start time keeps
            the edit's strength).

    Raises:
        ValueError: a shift that is not a finite number ``> 0``, a grid time above ``top``
            (or ``top`` above ``t_max``), or, on a discrete schedule, two times that round to
            the same step.
    """
    s = check_shift(shift)
    if s == 1.0:
        return grid
    top = schedule.t_max if top is None else float(top)
    if not 0 < top <= schedule.t_max:
        raise ValueError(f"top={top:g} must lie in (0, t_max={schedule.t_max:g}]")
    times = grid.times
    if float(times[0]) > top:
        raise ValueError(f"grid time {float(times[0]):g} exceeds the fixed top {top:g}")
    moved = shift_times(times, s, top)
    if isinstance(schedule, DiscreteSchedule):
        inner = moved > 0
        moved = torch.where(inner, torch.round(moved).clamp(min=1.0), moved)
        if not bool((moved[1:] < moved[:-1]).all()):
            raise ValueError(
                f"shift {s:g} of a {len(grid)}-step grid makes two times round to the same of "
                f"the schedule's {schedule.T} integer steps; use fewer steps or a smaller shift"
            )
    return TimeGrid(moved[:-1].clone(), moved[1:].clone())
