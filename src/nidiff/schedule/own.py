"""The grid a model samples on by default, per schedule: one home for the policy.

* discrete (DDPM-style) tables: diffusers' "leading" spacing (:func:`~.grid.leading_grid`);
* variance exploding (NI-SMLD): SMLD's geometric ladder from ``sigma_max`` down to the
  schedule's ``sigma_min``, then ``0`` (:func:`~.ve.geometric_grid`).
"""

from __future__ import annotations

from .base import Schedule
from .grid import TimeGrid, leading_grid
from .ve import VESchedule, geometric_grid

__all__ = ["own_grid"]


def own_grid(schedule: Schedule, steps: int) -> TimeGrid:
    """The default ``steps``-step grid of a model trained on ``schedule`` (see the module).

    Raises:
        ValueError: a step count the spacing cannot take (VE: at least 2, the ladder's two
            ends), or a schedule with neither spacing.
    """
    if isinstance(schedule, VESchedule):
        return geometric_grid(schedule.t_max, schedule.sigma_min, steps)
    return leading_grid(schedule, steps)
