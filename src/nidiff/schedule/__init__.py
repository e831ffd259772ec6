"""Schedules (t → α_t, σ_t), NGDM rectified time, and explicit time grids."""

from .alpha_bar import AlphaBarSchedule
from .base import Schedule
from .discrete import DiscreteSchedule
from .flow import RectifiedFlow, dynamic_shift, flow_grid, flux_mu, static_shift
from .grid import TimeGrid, custom_grid, leading_grid, linspace_grid, trailing_grid
from .own import own_grid
from .shift import shift_grid, shift_times
from .ve import VESchedule, geometric_grid
from .vp import VPSchedule

__all__ = [
    "AlphaBarSchedule",
    "DiscreteSchedule",
    "RectifiedFlow",
    "Schedule",
    "TimeGrid",
    "VESchedule",
    "VPSchedule",
    "custom_grid",
    "dynamic_shift",
    "flow_grid",
    "flux_mu",
    "geometric_grid",
    "leading_grid",
    "linspace_grid",
    "own_grid",
    "shift_grid",
    "shift_times",
    "static_shift",
    "trailing_grid",
]
