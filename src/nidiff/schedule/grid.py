r"""Explicit time grids: the (t, t_prev) pairs a sampler walks, noisiest first.

Samplers never derive a previous time themselves (diffusers' ``t - T // N`` arithmetic silently
breaks on uneven grids); they walk the pairs of a :class:`TimeGrid`. The last ``t_prev`` is ``0``
(clean data) unless a grid is built to stop early.

Spacings, in paper time (diffusers' timestep + 1), for a schedule of ``T`` steps and ``N`` steps:

* ``leading``:  ``t_i = 1 + k·(T // N)`` (diffusers "leading", ``steps_offset`` = ``offset``);
* ``trailing``: ``t_i = round(T - k·T/N)`` for ``k = 0..N-1`` (diffusers "trailing");
* ``linspace``: ``1 + round(linspace(0, T - 1, N))`` (diffusers "linspace"; rounding before the
  shift matters: numpy rounds halves to even);
  for the continuous VP schedule, ``linspace(t_max, t_max/N, N)`` without rounding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .base import Schedule
from .discrete import DiscreteSchedule

__all__ = ["TimeGrid", "custom_grid", "leading_grid", "linspace_grid", "trailing_grid"]


@dataclass(frozen=True)
class TimeGrid:
    """A strictly descending sequence of step pairs ``(t[i], t_prev[i])``.

    Attributes:
        t: float64 ``(N,)``, the times at which the model is evaluated, strictly descending.
        t_prev: float64 ``(N,)``, the time each step lands on; ``t_prev[i] == t[i + 1]``.
    """

    t: Tensor
    t_prev: Tensor

    def __post_init__(self) -> None:
        if self.t.ndim != 1 or self.t.shape != self.t_prev.shape or self.t.numel() == 0:
            raise ValueError("a TimeGrid needs two 1-d tensors of the same non-zero length")
        if not (bool(torch.isfinite(self.t).all()) and bool(torch.isfinite(self.t_prev).all())):
            raise ValueError("grid times contain non-finite values (NaN or inf)")
        if not bool((self.t_prev < self.t).all()):
            raise ValueError("every step must go back in time: t_prev < t")
        if not bool((self.t[1:] == self.t_prev[:-1]).all()):
            raise ValueError("consecutive steps must chain: t_prev[i] == t[i + 1]")
        if bool((self.t_prev < 0).any()):
            raise ValueError("grid times must be >= 0")

    def __len__(self) -> int:
        return int(self.t.numel())

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return zip(self.t, self.t_prev, strict=True)

    def __getitem__(self, index: slice) -> TimeGrid:
        """Sub-grid of consecutive steps, e.g. ``grid[skip:]`` drops the ``skip`` noisiest steps."""
        if not isinstance(index, slice):
            raise TypeError("index a TimeGrid with a slice; iterate it for single pairs")
        return TimeGrid(self.t[index], self.t_prev[index])

    def ending_at(self, t_end: float) -> TimeGrid:
        """The same steps, the last one landing on ``t_end`` (``< t[-1]``) instead of
        ``t_prev[-1]``: e.g. diffusers' DDIM with ``set_alpha_to_one=False``, whose final step
        lands on ᾱ of the first training step (paper time 1) rather than on clean data."""
        t_end = float(t_end)
        if not 0.0 <= t_end < float(self.t[-1]):
            raise ValueError(f"t_end={t_end:g} must lie in [0, {float(self.t[-1]):g})")
        t_prev = self.t_prev.clone()
        t_prev[-1] = t_end
        return TimeGrid(self.t.clone(), t_prev)

    @property
    def times(self) -> Tensor:
        """All ``N + 1`` visited times, ``t[0] .. t_prev[-1]``."""
        return torch.cat([self.t, self.t_prev[-1:]])


def custom_grid(times: Sequence[float] | Tensor, schedule: Schedule | None = None) -> TimeGrid:
    """A grid through the given strictly descending times, ending at ``0``.

    ``0`` is appended unless ``times`` already ends with it. With ``schedule``, every time must
    lie in ``(0, t_max]``.
    """
    tt = torch.as_tensor(
        np.asarray(times, dtype=np.float64)
        if not isinstance(times, Tensor)
        else times.detach().to(torch.float64).cpu()
    )
    if tt.ndim != 1 or tt.numel() == 0:
        raise ValueError("times must be a non-empty 1-d sequence")
    if not bool(torch.isfinite(tt).all()):
        raise ValueError("times contains non-finite values")
    if tt.numel() > 1 and not bool((tt[1:] < tt[:-1]).all()):
        raise ValueError(f"times must be strictly descending, got {tt.tolist()}")
    if bool((tt < 0).any()):
        raise ValueError("times must be >= 0")
    if schedule is not None and float(tt[0]) > schedule.t_max:
        raise ValueError(f"time {float(tt[0]):g} exceeds the schedule's t_max={schedule.t_max:g}")
    if float(tt[-1]) != 0.0:
        tt = torch.cat([tt, tt.new_zeros(1)])
    if tt.numel() < 2:
        raise ValueError("a grid needs at least one time > 0")
    return TimeGrid(tt[:-1].clone(), tt[1:].clone())


def _check_steps(schedule: DiscreteSchedule, steps: int) -> int:
    if not isinstance(schedule, DiscreteSchedule):
        raise ValueError("leading/trailing spacing needs a DiscreteSchedule; use linspace_grid")
    if int(steps) != steps or not (1 <= steps <= schedule.T):
        raise ValueError(f"steps={steps} must be an integer in [1, T={schedule.T}]")
    return int(steps)


def leading_grid(schedule: DiscreteSchedule, steps: int, offset: int = 0) -> TimeGrid:
    """diffusers' "leading" spacing: ``t = 1 + offset + k·(T // steps)``, descending.

    ``offset`` is diffusers' ``steps_offset`` (Stable Diffusion uses 1), a non-negative integer.
    """
    n = _check_steps(schedule, steps)
    if int(offset) != offset or offset < 0:
        raise ValueError(f"offset={offset} must be a non-negative integer")
    offset = int(offset)
    c = schedule.T // n
    t = 1 + offset + np.arange(n)[::-1] * c
    if t[0] > schedule.T:
        raise ValueError(f"offset={offset} pushes the first time past T={schedule.T}")
    return custom_grid(t.astype(np.float64))


def trailing_grid(schedule: DiscreteSchedule, steps: int, start: int | None = None) -> TimeGrid:
    """diffusers' "trailing" spacing: ``t = round(T - k·T/steps)``, starting at ``T``.

    With ``start`` (an integer step in ``[steps, T]``) the same spacing of the interval
    ``[0, start]``: ``t = round(start - k·start/steps)``, the ``steps``-step grid of an edit that
    begins at ``start`` (``start=None`` is ``T``, diffusers' grid).
    """
    n = _check_steps(schedule, steps)
    top = schedule.T
    if start is not None:
        if isinstance(start, bool) or int(start) != start or not (n <= start <= schedule.T):
            raise ValueError(
                f"start={start!r} must be an integer step in [steps={n}, T={schedule.T}]"
            )
        top = int(start)
    t = np.round(np.arange(top, 0, -top / n))[:n]
    return custom_grid(t.astype(np.float64))


def linspace_grid(schedule: Schedule, steps: int) -> TimeGrid:
    """Evenly spaced times from ``t_max`` down (rounded to integers for discrete schedules)."""
    if isinstance(schedule, DiscreteSchedule):
        n = _check_steps(schedule, steps)
        t = 1 + np.round(np.linspace(0, schedule.T - 1, n))[::-1]
    else:
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps={steps} must be a positive integer")
        t = np.linspace(schedule.t_max, schedule.t_max / steps, int(steps))
    return custom_grid(t.astype(np.float64))
