"""The grid shift toward high noise (``shift_grid``) and the trailing grid of an edit that starts
below ``T`` (``trailing_grid(start=)``): properties, SD3's shift on rectified flow, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nidiff.schedule import (
    DiscreteSchedule,
    RectifiedFlow,
    VPSchedule,
    linspace_grid,
    shift_grid,
    static_shift,
    trailing_grid,
)
from nidiff.schedule.grid import custom_grid

T1000 = DiscreteSchedule.linear(1000)


@pytest.mark.parametrize("schedule", [T1000, VPSchedule(), RectifiedFlow()])
def test_shift_one_is_the_grid_itself(schedule):
    grid = linspace_grid(schedule, 10)
    assert shift_grid(grid, schedule, 1.0) is grid


@pytest.mark.parametrize("shift", [0.5, 2.0, 3.0])
def test_shift_keeps_the_ends_and_moves_inner_times_monotonically(shift):
    vp = VPSchedule()
    grid = linspace_grid(vp, 8)
    moved = shift_grid(grid, vp, shift)
    assert float(moved.t[0]) == pytest.approx(vp.t_max) and float(moved.t_prev[-1]) == 0.0
    inner_before, inner_after = grid.t[1:], moved.t[1:]
    if shift > 1:
        assert bool((inner_after > inner_before).all())  # toward high noise
    else:
        assert bool((inner_after < inner_before).all())
    assert bool((moved.t[1:] < moved.t[:-1]).all())  # still a grid (TimeGrid checks it too)


def test_on_rectified_flow_it_is_sd3s_static_shift():
    flow = RectifiedFlow()
    grid = linspace_grid(flow, 7)
    moved = shift_grid(grid, flow, 3.0)
    np.testing.assert_allclose(moved.t.numpy(), static_shift(grid.t.numpy(), 3.0), rtol=1e-12)


def test_top_keeps_an_edits_start_time():
    grid = trailing_grid(T1000, 3, start=500)
    assert grid.t.tolist() == [500.0, 333.0, 167.0]
    moved = shift_grid(grid, T1000, 3.0, top=500)
    # u = t/500 -> 3u/(1 + 2u): 500 stays, 333 -> 428.4, 167 -> 300.4, all rounded
    assert moved.t.tolist() == [500.0, 428.0, 300.0] and moved.t_prev.tolist()[-1] == 0.0
    assert shift_grid(grid, T1000, 3.0).t[0] == 750.0  # without top the start moves too


def test_discrete_times_are_integer_steps_and_collisions_are_refused():
    moved = shift_grid(linspace_grid(T1000, 20), T1000, 2.0)
    assert torch.equal(moved.t, torch.round(moved.t)) and float(moved.t.min()) >= 1
    crowded = custom_grid([10.0, 9.0, 8.0, 7.0], T1000)
    with pytest.raises(ValueError, match="round to the same"):
        shift_grid(crowded, T1000, 50.0, top=10)


@pytest.mark.parametrize("shift", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_bad_shifts(shift):
    grid = linspace_grid(T1000, 5)
    with pytest.raises(ValueError, match="finite number > 0"):
        shift_grid(grid, T1000, shift)


def test_times_above_the_fixed_top_are_refused():
    with pytest.raises(ValueError, match="exceeds the fixed top"):
        shift_grid(linspace_grid(T1000, 5), T1000, 2.0, top=500)
    with pytest.raises(ValueError, match=r"must lie in \(0, t_max"):
        shift_grid(linspace_grid(T1000, 5), T1000, 2.0, top=2000)


def test_trailing_start_is_the_trailing_spacing_of_the_shorter_interval():
    assert trailing_grid(T1000, 4, start=None).t.tolist() == trailing_grid(T1000, 4).t.tolist()
    assert trailing_grid(T1000, 4, start=1000).t.tolist() == [1000.0, 750.0, 500.0, 250.0]
    assert trailing_grid(T1000, 1, start=300).t.tolist() == [300.0]
    grid = trailing_grid(T1000, 7, start=300)
    expect = np.round(300 * np.arange(7, 0, -1) / 7)
    assert grid.t.tolist() == expect.tolist() and grid.t_prev.tolist()[-1] == 0.0


@pytest.mark.parametrize("start", [0, 3, 1001, 2.5, True])
def test_trailing_start_must_fit(start):
    with pytest.raises(ValueError, match="integer step"):
        trailing_grid(T1000, 4, start=start)
