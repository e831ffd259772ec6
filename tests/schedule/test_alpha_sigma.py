"""The (α_t, σ_t) contract of every schedule: rectified flow, VE, the VP family; log-SNR
inverses, the transition variance, derivatives, and NGDM's rule through the SNR."""

from __future__ import annotations

import math

import pytest
import torch

from nidiff.schedule import (
    DiscreteSchedule,
    RectifiedFlow,
    Schedule,
    VESchedule,
    VPSchedule,
    dynamic_shift,
    flow_grid,
    flux_mu,
    geometric_grid,
    static_shift,
)

f64 = torch.float64
ALL = {
    "linear": DiscreteSchedule.linear,
    "cosine": DiscreteSchedule.cosine,
    "vp": VPSchedule,
    "flow": RectifiedFlow,
    "ve": lambda: VESchedule(20.0),
}
CONTINUOUS = ("vp", "flow", "ve")


@pytest.fixture(params=sorted(ALL))
def name(request) -> str:
    return request.param


def _times(s: Schedule, n: int = 33) -> torch.Tensor:
    return torch.linspace(0, s.t_max, n, dtype=f64)[1:-1]


def test_clean_data_at_t0_and_monotone_snr(name):
    s = ALL[name]()
    a0, s0 = s.coefficients(0.0)
    assert float(a0) == 1.0 and float(s0) == 0.0 and float(s.log_snr(0.0)) == math.inf
    ell = s.log_snr(_times(s))
    assert bool((ell[1:] < ell[:-1]).all()), "log-SNR must strictly decrease"


def test_log_snr_inverse_round_trips(name):
    s = ALL[name]()
    t = _times(s)
    tol = 1e-6 if name in ("linear", "cosine") else 1e-10  # tables: piecewise-linear inverse
    torch.testing.assert_close(s.time_of_log_snr(s.log_snr(t)), t, rtol=tol, atol=tol * s.t_max)


def test_coefficients_agree_with_the_generic_log_form(name):
    s = ALL[name]()
    t = _times(s)
    log_a, log_s = s._log_coefficients(t)
    a, b = s.coefficients(t)
    torch.testing.assert_close(a, log_a.exp(), rtol=1e-12, atol=0)
    torch.testing.assert_close(b, log_s.exp(), rtol=1e-12, atol=0)
    torch.testing.assert_close(s.sigma2(t), b * b, rtol=1e-12, atol=0)
    torch.testing.assert_close(s.log_snr(t), 2 * (a.log() - b.log()), rtol=1e-11, atol=1e-11)


def test_transition_variance_matches_its_definition(name):
    s = ALL[name]()
    t = _times(s)
    sv = t * 0.37
    a_t, b_t = s.coefficients(t)
    a_s, b_s = s.coefficients(sv)
    want = b_t**2 - (a_t / a_s) ** 2 * b_s**2
    torch.testing.assert_close(s.transition_var(t, sv), want, rtol=1e-9, atol=1e-13)
    generic = Schedule.transition_var(s, t, sv)
    torch.testing.assert_close(generic, want, rtol=1e-9, atol=1e-13)


def test_vp_family_is_variance_preserving_and_others_are_not():
    for s in (DiscreteSchedule.linear(), VPSchedule()):
        a, b = s.coefficients(_times(s))
        torch.testing.assert_close(a * a + b * b, torch.ones_like(a), rtol=1e-12, atol=0)
    a, b = RectifiedFlow().coefficients(torch.tensor([0.25, 0.5], dtype=f64))
    assert torch.equal(a, torch.tensor([0.75, 0.5], dtype=f64)) and torch.equal(b, 1 - a)
    a, b = VESchedule(20.0).coefficients(torch.tensor([3.0], dtype=f64))
    assert float(a) == 1.0 and float(b) == 3.0 and VESchedule(20.0).prior_std == 20.0


@pytest.mark.parametrize("name", CONTINUOUS)
def test_velocity_coefficients_are_the_time_derivatives(name):
    s = ALL[name]()
    t = _times(s)[2:-2]
    h = 1e-6 * s.t_max
    a1, b1 = s.coefficients(t + h)
    a0, b0 = s.coefficients(t - h)
    da, db = s.velocity_coefficients(t)
    torch.testing.assert_close(da, (a1 - a0) / (2 * h), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(db, (b1 - b0) / (2 * h), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_drift_and_diffusion_reproduce_the_marginal(name):
    """d(σ²)/dt = 2fσ² + g² and dα/dt = fα for the forward SDE dx = f x dt + g dw."""
    s = ALL[name]()
    t = _times(s)[2:-2]
    f, g2 = s.drift_diffusion(t)
    a, b = s.coefficients(t)
    da, db = s.velocity_coefficients(t)
    torch.testing.assert_close(f * a, da, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(2 * f * b * b + g2, 2 * b * db, rtol=1e-10, atol=1e-12)
    generic = Schedule.drift_diffusion(s, t)
    torch.testing.assert_close(generic[0], f, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(generic[1], g2, rtol=1e-10, atol=1e-12)


def test_a_discrete_table_has_no_time_derivative():
    s = DiscreteSchedule.linear(100)
    assert not s.has_velocity and RectifiedFlow().has_velocity and VPSchedule().has_velocity
    with pytest.raises(ValueError, match="no time derivative"):
        s.velocity_coefficients(10.0)


# ------------------------------------------------------------------ NGDM through the SNR
def test_rectified_time_is_the_power_rule_on_the_vp_equivalent_alpha_bar(name):
    s = ALL[name]()
    t = _times(s, 17)[:, None] * 0.98  # below rectified flow's SNR-0 end
    lam = torch.linspace(0, 1, 11, dtype=f64)[None, :]
    tau = s.rectified_time(t, lam)
    torch.testing.assert_close(
        s.log_alpha_bar(tau), lam * s.log_alpha_bar(t), rtol=1e-8, atol=1e-10
    )
    assert bool((tau[:, 1:] >= tau[:, :-1]).all()), "tau must be non-decreasing in lam"
    assert torch.equal(tau[:, -1:], t) and bool((tau[:, 0] == 0).all())


def test_vp_rule_is_unchanged_by_the_snr_form():
    """On VP schedules the generic SNR form equals the paper's power rule."""
    for s in (VPSchedule(), DiscreteSchedule.scaled_linear()):
        t = torch.tensor([0.3, 0.9], dtype=f64)[:, None] * s.t_max
        lam = torch.rand(1, 50, generator=torch.Generator().manual_seed(0), dtype=f64)
        torch.testing.assert_close(
            Schedule.rectified_time(s, t, lam), s.rectified_time(t, lam), rtol=1e-9, atol=1e-9
        )


def test_vp_equivalent_alpha_bar_of_flow():
    s, t = RectifiedFlow(), torch.tensor([0.2, 0.5, 0.8], dtype=f64)
    want = (1 - t) ** 2 / ((1 - t) ** 2 + t**2)
    torch.testing.assert_close(s.alpha_bar(t), want, rtol=1e-12, atol=0)
    # at t = 1 the SNR is 0: every lam > 0 starts at t = 1
    assert torch.equal(
        s.rectified_time(1.0, torch.tensor([0.0, 0.3, 1.0])),
        torch.tensor([0.0, 1.0, 1.0], dtype=f64),
    )


# ------------------------------------------------------------------ grids
def test_shifts():
    sig = torch.tensor([0.1, 0.5, 1.0], dtype=f64)
    torch.testing.assert_close(static_shift(sig, 3.0), 3 * sig / (1 + 2 * sig))
    assert float(static_shift(1.0, 3.0)) == 1.0 and float(dynamic_shift(1.0, 0.7)) == 1.0
    assert float(static_shift(sig, 1.0)[0]) == 0.1
    mu = flux_mu(4096)
    assert abs(mu - 1.15) < 1e-12 and abs(flux_mu(256) - 0.5) < 1e-12
    grid = flow_grid(8, mu=mu)
    assert float(grid.t[0]) == 1.0 and float(grid.t_prev[-1]) == 0.0 and len(grid) == 8
    with pytest.raises(ValueError, match="shift"):
        flow_grid(4, shift=0.0)
    with pytest.raises(ValueError, match="steps"):
        flow_grid(0)


def test_geometric_grid():
    g = geometric_grid(50.0, 0.01, 10)
    ratio = g.t[1:] / g.t[:-1]
    torch.testing.assert_close(ratio, torch.full_like(ratio, ratio[0].item()))
    assert float(g.t[0]) == 50.0 and float(g.t_prev[-1]) == 0.0
    with pytest.raises(ValueError, match="sigma_min"):
        geometric_grid(1.0, 2.0, 4)
