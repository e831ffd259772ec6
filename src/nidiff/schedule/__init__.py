"""Schedules (t → ᾱ), NGDM rectified time, and explicit time grids."""

from .base import Schedule
from .discrete import DiscreteSchedule
from .grid import TimeGrid, custom_grid, leading_grid, linspace_grid, trailing_grid
from .vp import VPSchedule

__all__ = [
    "DiscreteSchedule",
    "Schedule",
    "TimeGrid",
    "VPSchedule",
    "custom_grid",
    "leading_grid",
    "linspace_grid",
    "trailing_grid",
]
