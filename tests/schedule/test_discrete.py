"""Discrete DDPM schedules: the ᾱ table, its log-linear interpolation, inverse, diffusers parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nidiff.schedule import DiscreteSchedule

T = 1000

# Reference betas written out from the papers' definitions (float64), independent of the library.
_s = 0.008


def _f(u: float) -> float:
    return math.cos((u + _s) / (1 + _s) * math.pi / 2) ** 2


REFERENCE_BETAS = {
    "linear": np.linspace(1e-4, 0.02, T),
    "scaled_linear": np.linspace(0.00085**0.5, 0.012**0.5, T) ** 2,
    "cosine": np.array([min(1 - _f((i + 1) / T) / _f(i / T), 0.999) for i in range(T)]),
}
BUILDERS = {
    "linear": DiscreteSchedule.linear,
    "scaled_linear": DiscreteSchedule.scaled_linear,
    "cosine": DiscreteSchedule.cosine,
}
# our constructor -> diffusers' beta_schedule name and the config that goes with it
DIFFUSERS_CONFIG = {
    "linear": {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02},
    "scaled_linear": {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    "cosine": {"beta_schedule": "squaredcos_cap_v2"},
}


@pytest.fixture(params=sorted(BUILDERS))
def kind(request) -> str:
    return request.param


@pytest.fixture
def schedule(kind) -> DiscreteSchedule:
    return BUILDERS[kind]()


def _table(kind: str) -> torch.Tensor:
    """ᾱ_0..ᾱ_T as a float64 product of (1 - β)."""
    alphas = 1 - torch.from_numpy(REFERENCE_BETAS[kind])
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(alphas, 0)])


# ----------------------------------------------------------------------------- the table
def test_betas_follow_the_published_formula(kind, schedule):
    assert schedule.T == T and schedule.t_max == float(T)
    torch.testing.assert_close(
        schedule.betas, torch.from_numpy(REFERENCE_BETAS[kind]), rtol=1e-12, atol=0
    )


def test_table_is_exact_at_integers(kind, schedule):
    k = torch.arange(T + 1)
    torch.testing.assert_close(schedule.alpha_bar(k), _table(kind), rtol=1e-12, atol=0)
    assert schedule.alpha_bar(k).dtype == torch.float64


def test_clean_end_is_exactly_one(schedule):
    assert schedule.alpha_bar(0).item() == 1.0
    assert schedule.log_alpha_bar(torch.zeros(3)).eq(0).all()
    sa, sb = schedule.coefficients(0.0)
    assert sa.item() == 1.0 and sb.item() == 0.0


def test_strictly_decreasing(schedule):
    ab_int = schedule.alpha_bar(torch.arange(T + 1))
    assert (ab_int[1:] < ab_int[:-1]).all()
    dense = schedule.alpha_bar(torch.linspace(0, T, 20 * T + 1, dtype=torch.float64))
    assert (dense[1:] < dense[:-1]).all()


def test_log_linear_interpolation_between_steps(kind, schedule):
    g = torch.Generator().manual_seed(0)
    k = torch.randint(0, T, (200,), generator=g)
    f = torch.rand(200, generator=g, dtype=torch.float64)
    log_tab = _table(kind).log()
    expected = (1 - f) * log_tab[k] + f * log_tab[k + 1]
    torch.testing.assert_close(schedule.log_alpha_bar(k + f), expected, rtol=1e-12, atol=1e-14)
    # the midpoint is the geometric mean of its neighbours
    tab = _table(kind)
    torch.testing.assert_close(
        schedule.alpha_bar(k + 0.5), (tab[k] * tab[k + 1]).sqrt(), rtol=1e-12, atol=0
    )


def test_any_shape_and_both_float_dtypes(schedule):
    g = torch.Generator().manual_seed(1)
    t64 = torch.rand(2, 1, 4, 4, generator=g, dtype=torch.float64) * T
    t32 = t64.float()
    out32, out64 = schedule.alpha_bar(t32), schedule.alpha_bar(t32.double())
    assert out32.shape == (2, 1, 4, 4) and out32.dtype == torch.float64
    torch.testing.assert_close(out32, out64, rtol=0, atol=0)


def test_coefficients_are_a_unit_pair(schedule):
    t = torch.linspace(0, T, 101)
    sa, sb = schedule.coefficients(t)
    torch.testing.assert_close(sa**2 + sb**2, torch.ones_like(sa, dtype=torch.float64))
    torch.testing.assert_close(sa**2, schedule.alpha_bar(t), rtol=1e-12, atol=0)


def test_small_schedule():
    s = DiscreteSchedule([0.1, 0.2, 0.5])
    torch.testing.assert_close(
        s.alpha_bar(torch.arange(4)), torch.tensor([1.0, 0.9, 0.72, 0.36], dtype=torch.float64)
    )
    torch.testing.assert_close(s.alpha_bar(2.5), torch.tensor(0.72 * 0.5**0.5, dtype=torch.float64))


# ---------------------------------------------------------------------- diffusers parity
@pytest.mark.parametrize("scheduler_name", ["DDPMScheduler", "DDIMScheduler"])
def test_matches_diffusers_alphas_cumprod(kind, schedule, scheduler_name):
    diffusers = pytest.importorskip("diffusers")
    sched = getattr(diffusers, scheduler_name)(num_train_timesteps=T, **DIFFUSERS_CONFIG[kind])
    # diffusers builds betas in float32: agree to float32 rounding.
    torch.testing.assert_close(schedule.betas, sched.betas.double(), rtol=5e-7, atol=0)
    # paper time t is diffusers' timestep t - 1; diffusers' cumprod runs in float32 and drifts.
    ours = schedule.alpha_bar(torch.arange(1, T + 1))
    torch.testing.assert_close(ours, sched.alphas_cumprod.double(), rtol=5e-5, atol=0)


def test_from_diffusers_reproduces_the_scheduler_table(kind):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDIMScheduler(num_train_timesteps=T, **DIFFUSERS_CONFIG[kind])
    ac = sched.alphas_cumprod.clone()
    s = DiscreteSchedule.from_diffusers(sched)
    assert s.T == T
    torch.testing.assert_close(s.alpha_bar(torch.arange(1, T + 1)), ac.double(), rtol=1e-12, atol=0)
    assert torch.equal(sched.alphas_cumprod, ac)  # the scheduler is left untouched


def test_from_diffusers_needs_a_table():
    class NotAScheduler:
        pass

    with pytest.raises(ValueError, match="NotAScheduler has no alphas_cumprod"):
        DiscreteSchedule.from_diffusers(NotAScheduler())


# ---------------------------------------------------------------------------- round trips
def test_from_alphas_cumprod_round_trip(schedule):
    ac = schedule.alpha_bar(torch.arange(1, T + 1))
    ac_before = ac.clone()
    again = DiscreteSchedule.from_alphas_cumprod(ac)
    torch.testing.assert_close(again.betas, schedule.betas, rtol=1e-9, atol=0)
    torch.testing.assert_close(
        again.log_alpha_bar_table, schedule.log_alpha_bar_table, rtol=1e-12, atol=1e-13
    )
    assert torch.equal(ac, ac_before)
    # plain sequences and numpy arrays work too
    from_list = DiscreteSchedule.from_alphas_cumprod(ac.tolist())
    torch.testing.assert_close(from_list.betas, again.betas, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(7,), (2, 1, 4, 4), ()])
def test_time_of_alpha_bar_inverts_alpha_bar(schedule, shape):
    g = torch.Generator().manual_seed(2)
    t = torch.rand(shape, generator=g, dtype=torch.float64) * T
    t_before = t.clone()
    back = schedule.time_of_alpha_bar(schedule.alpha_bar(t))
    assert back.shape == t.shape
    torch.testing.assert_close(back, t, rtol=0, atol=1e-8)
    assert torch.equal(t, t_before)


def test_time_of_alpha_bar_at_the_table_points(schedule):
    k = torch.arange(T + 1, dtype=torch.float64)
    torch.testing.assert_close(
        schedule.time_of_alpha_bar(schedule.alpha_bar(k)), k, rtol=0, atol=1e-9
    )


def test_alpha_bar_inverts_time_of_alpha_bar(schedule):
    lo = float(schedule.alpha_bar(T))
    g = torch.Generator().manual_seed(3)
    a = lo + (1 - lo) * torch.rand(3, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        schedule.alpha_bar(schedule.time_of_alpha_bar(a)), a, rtol=1e-12, atol=0
    )


def test_float32_time_round_trip(schedule):
    t32 = torch.tensor([[0.0, 12.5], [500.25, 999.75]], dtype=torch.float32)
    back = schedule.time_of_alpha_bar(schedule.alpha_bar(t32))
    torch.testing.assert_close(back, t32.double(), rtol=0, atol=1e-8)
    assert t32.dtype == torch.float32


# ---------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [-1e-6, T + 1e-3, math.nan, math.inf])
def test_time_outside_the_schedule_raises(schedule, bad):
    with pytest.raises(ValueError, match=r"^t"):
        schedule.alpha_bar(torch.tensor([1.0, bad]))
    with pytest.raises(ValueError, match=r"^t"):
        schedule.coefficients(bad)


@pytest.mark.parametrize("bad", [1.0 + 1e-9, 0.0, -0.5, math.nan])
def test_alpha_bar_outside_the_schedule_raises(schedule, bad):
    with pytest.raises(ValueError, match="alpha_bar"):
        schedule.time_of_alpha_bar(torch.tensor([0.5, bad], dtype=torch.float64))


def test_alpha_bar_below_the_last_step_raises(schedule):
    with pytest.raises(ValueError, match="alpha_bar"):
        schedule.time_of_alpha_bar(schedule.alpha_bar(T) * 0.5)


@pytest.mark.parametrize(
    "betas",
    [[], [[0.1, 0.2]], [0.1, 0.0], [0.1, 1.0], [-0.1, 0.2], [0.1, math.nan], [0.1, math.inf]],
)
def test_bad_betas(betas):
    with pytest.raises(ValueError, match="betas"):
        DiscreteSchedule(betas)


@pytest.mark.parametrize("T_bad", [0, -3, 2.5])
def test_bad_number_of_steps(T_bad):
    with pytest.raises(ValueError, match="positive integer"):
        DiscreteSchedule.linear(T_bad)


@pytest.mark.parametrize(
    "ac", [[0.9, 0.95], [0.9, 0.9], [1.0, 0.5], [0.9, 0.0], [0.9, -0.1], [0.9, math.nan], []]
)
def test_bad_alphas_cumprod(ac):
    with pytest.raises(ValueError, match="alphas_cumprod"):
        DiscreteSchedule.from_alphas_cumprod(ac)


def test_constructor_copies_the_callers_betas():
    betas = torch.linspace(1e-4, 0.02, 50, dtype=torch.float64)
    before = betas.clone()
    s = DiscreteSchedule(betas)
    assert torch.equal(betas, before)
    betas[0] = 0.5  # the caller keeps ownership of its tensor
    assert s.betas[0].item() == pytest.approx(1e-4)


def test_repr_mentions_the_shape():
    assert repr(DiscreteSchedule.linear()).startswith("DiscreteSchedule(T=1000")
