"""Time grids: diffusers' spacings (paper time = timestep + 1), chaining, custom lists, slicing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nidiff.schedule import (
    DiscreteSchedule,
    TimeGrid,
    VPSchedule,
    custom_grid,
    leading_grid,
    linspace_grid,
    trailing_grid,
)

BUILD = {"leading": leading_grid, "trailing": trailing_grid, "linspace": linspace_grid}
# 3 and 7 put linspace values on exact halves (numpy rounds them to even); 61 and 103 make the
# float arange behind diffusers' "trailing" overshoot by one element.
STEPS_T1000 = [1, 2, 3, 7, 10, 25, 50, 61, 99, 100, 103, 333, 500, 999, 1000]


def _diffusers_paper_times(T: int, steps: int, spacing: str, steps_offset: int = 0) -> np.ndarray:
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDIMScheduler(
        num_train_timesteps=T, timestep_spacing=spacing, steps_offset=steps_offset
    )
    sched.set_timesteps(steps)
    paper = sched.timesteps.numpy().astype(np.float64) + 1
    # diffusers' trailing spacing can emit a spurious last timestep -1 (paper time 0, the clean
    # end); a TimeGrid represents that point as its final t_prev, not as a model evaluation.
    if spacing == "trailing" and paper[-1] == 0:
        paper = paper[:-1]
    return paper


def _assert_well_formed(grid: TimeGrid, steps: int | None = None) -> None:
    if steps is not None:
        assert len(grid) == steps
    assert grid.t.dtype == torch.float64 and grid.t_prev.dtype == torch.float64
    assert (grid.t[1:] < grid.t[:-1]).all()
    assert torch.equal(grid.t_prev[:-1], grid.t[1:])
    assert grid.t_prev[-1].item() == 0.0
    pairs = list(grid)
    assert len(pairs) == len(grid)
    assert all(float(tp) < float(t) for t, tp in pairs)
    assert torch.equal(grid.times, torch.cat([grid.t, torch.zeros(1, dtype=torch.float64)]))


# ------------------------------------------------------------------------ diffusers parity
@pytest.mark.parametrize("spacing", sorted(BUILD))
@pytest.mark.parametrize("steps", STEPS_T1000)
def test_spacing_matches_diffusers_T1000(spacing, steps):
    s = DiscreteSchedule.linear(1000)
    grid = BUILD[spacing](s, steps)
    np.testing.assert_array_equal(grid.t.numpy(), _diffusers_paper_times(1000, steps, spacing))
    _assert_well_formed(grid, steps)


@pytest.mark.parametrize("spacing", sorted(BUILD))
def test_spacing_matches_diffusers_for_every_step_count(spacing):
    T = 60
    s = DiscreteSchedule.linear(T)
    for steps in range(1, T + 1):
        grid = BUILD[spacing](s, steps)
        np.testing.assert_array_equal(
            grid.t.numpy(), _diffusers_paper_times(T, steps, spacing), err_msg=f"steps={steps}"
        )
        _assert_well_formed(grid, steps)


@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("steps", [10, 50, 100, 333])
def test_leading_offset_is_steps_offset(offset, steps):
    s = DiscreteSchedule.scaled_linear(1000)
    grid = leading_grid(s, steps, offset=offset)
    expected = _diffusers_paper_times(1000, steps, "leading", steps_offset=offset)
    np.testing.assert_array_equal(grid.t.numpy(), expected)
    _assert_well_formed(grid, steps)
    assert grid.t[-1].item() == 1 + offset


def test_trailing_starts_at_T_and_leading_does_not():
    s = DiscreteSchedule.linear(1000)
    assert trailing_grid(s, 50).t[0].item() == 1000
    assert leading_grid(s, 50).t[0].item() == 981
    assert linspace_grid(s, 50).t[0].item() == 1000


# ----------------------------------------------------------------------- continuous VP grid
def test_linspace_on_the_vp_schedule():
    grid = linspace_grid(VPSchedule(), 4)
    torch.testing.assert_close(grid.t, torch.tensor([1.0, 0.75, 0.5, 0.25], dtype=torch.float64))
    _assert_well_formed(grid, 4)


@pytest.mark.parametrize("build", [leading_grid, trailing_grid])
def test_integer_spacings_need_a_discrete_schedule(build):
    with pytest.raises(ValueError, match="DiscreteSchedule"):
        build(VPSchedule(), 10)


# ---------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("spacing", sorted(BUILD))
@pytest.mark.parametrize("steps", [0, -1, 1001, 2.5])
def test_bad_step_counts(spacing, steps):
    with pytest.raises(ValueError, match="steps"):
        BUILD[spacing](DiscreteSchedule.linear(1000), steps)


@pytest.mark.parametrize("steps", [0, 2.5])
def test_bad_step_counts_vp(steps):
    with pytest.raises(ValueError, match="steps"):
        linspace_grid(VPSchedule(), steps)


@pytest.mark.parametrize("offset", [-1, 0.5])
def test_bad_offset(offset):
    with pytest.raises(ValueError, match="offset"):
        leading_grid(DiscreteSchedule.linear(100), 10, offset=offset)


def test_offset_past_T():
    s = DiscreteSchedule.linear(10)
    leading_grid(s, 10, offset=0)
    with pytest.raises(ValueError, match="offset=1 pushes the first time past T=10"):
        leading_grid(s, 10, offset=1)


# ------------------------------------------------------------------------------ custom grids
def test_custom_grid_appends_zero():
    grid = custom_grid([900, 500.5, 100])
    torch.testing.assert_close(grid.t, torch.tensor([900, 500.5, 100], dtype=torch.float64))
    torch.testing.assert_close(grid.t_prev, torch.tensor([500.5, 100, 0], dtype=torch.float64))
    _assert_well_formed(grid, 3)


def test_custom_grid_keeps_a_final_zero():
    grid = custom_grid(torch.tensor([0.8, 0.3, 0.0]), VPSchedule())
    assert len(grid) == 2
    _assert_well_formed(grid, 2)


def test_custom_grid_does_not_touch_the_callers_tensor():
    times = torch.tensor([30.0, 20.0, 10.0], dtype=torch.float32)
    before = times.clone()
    grid = custom_grid(times)
    grid.t.add_(0)  # in-place on the grid's own storage must not reach the caller
    assert torch.equal(times, before) and times.dtype == torch.float32
    assert grid.t.data_ptr() != times.data_ptr()


@pytest.mark.parametrize(
    ("times", "match"),
    [
        ([100, 200], "strictly descending"),
        ([300, 300, 100], "strictly descending"),
        ([300, 100, 200], "strictly descending"),
        ([300, -1], "strictly descending|>= 0"),
        ([-1], ">= 0"),
        ([300, math.nan, 100], "non-finite"),
        ([math.inf, 100], "non-finite"),
        ([], "non-empty"),
        ([[3, 2]], "1-d"),
        ([0], "at least one time > 0"),
    ],
)
def test_custom_grid_rejects_bad_lists(times, match):
    with pytest.raises(ValueError, match=match):
        custom_grid(times)


def test_custom_grid_negative_tail():
    with pytest.raises(ValueError, match=">= 0"):
        custom_grid([3.0, 1.0, -0.5])


def test_custom_grid_checks_t_max():
    custom_grid([1000, 1], DiscreteSchedule.linear(1000))
    with pytest.raises(ValueError, match="exceeds the schedule's t_max=1000"):
        custom_grid([1001, 1], DiscreteSchedule.linear(1000))
    with pytest.raises(ValueError, match="t_max=1"):
        custom_grid([1.5, 0.5], VPSchedule())


# ---------------------------------------------------------------------------------- slicing
def test_slicing_drops_the_noisiest_steps():
    grid = trailing_grid(DiscreteSchedule.linear(1000), 10)
    sub = grid[3:]
    assert isinstance(sub, TimeGrid)
    assert torch.equal(sub.t, grid.t[3:]) and torch.equal(sub.t_prev, grid.t_prev[3:])
    _assert_well_formed(sub, 7)
    head = grid[:4]
    assert len(head) == 4 and head.t_prev[-1].item() == grid.t[4].item()


def test_bad_slices():
    grid = trailing_grid(DiscreteSchedule.linear(1000), 10)
    with pytest.raises(TypeError, match="slice"):
        grid[0]
    with pytest.raises(ValueError, match="non-zero length"):
        grid[10:]
    with pytest.raises(ValueError, match="chain"):
        grid[::2]


# ----------------------------------------------------------------------- TimeGrid invariants
def _f64(*v):
    return torch.tensor(v, dtype=torch.float64)


@pytest.mark.parametrize(
    ("t", "t_prev", "match"),
    [
        (_f64(3, 2), _f64(2, 2), "go back in time"),
        (_f64(3, 2), _f64(1, 0), "chain"),
        (_f64(3, 2), _f64(2), "same non-zero length"),
        (_f64(), _f64(), "same non-zero length"),
        (_f64(1), _f64(-1), ">= 0"),
        (_f64(3, math.nan), _f64(math.nan, 0), "non-finite"),
    ],
)
def test_timegrid_validates(t, t_prev, match):
    with pytest.raises(ValueError, match=match):
        TimeGrid(t, t_prev)


def test_timegrid_is_frozen():
    grid = custom_grid([2.0, 1.0])
    with pytest.raises(AttributeError):
        grid.t = _f64(5.0, 1.0)
