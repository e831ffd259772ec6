"""NGDM rectified time (Lemma 1, eq. 8): ᾱ(τ) = ᾱ(t)^λ, per-pixel start times, and Theorem 1
checked by simulating the per-pixel forward process."""

from __future__ import annotations

import math

import pytest
import torch

from nidiff.schedule import DiscreteSchedule, Schedule, VPSchedule

SCHEDULES = {
    "vp": VPSchedule,
    "linear": DiscreteSchedule.linear,
    "scaled_linear": DiscreteSchedule.scaled_linear,
    "cosine": DiscreteSchedule.cosine,
}


@pytest.fixture(params=sorted(SCHEDULES))
def schedule(request) -> Schedule:
    return SCHEDULES[request.param]()


def _grid_t_lam(schedule: Schedule, n_t: int = 41, n_lam: int = 41):
    t = torch.linspace(0, schedule.t_max, n_t, dtype=torch.float64)[:, None]
    lam = torch.linspace(0, 1, n_lam, dtype=torch.float64)[None, :]
    return t, lam


# ------------------------------------------------------------------------- the power rule
def test_power_rule_holds_for_every_schedule(schedule):
    t, lam = _grid_t_lam(schedule)
    tau = schedule.rectified_time(t, lam)
    assert tau.shape == (41, 41) and tau.dtype == torch.float64
    torch.testing.assert_close(
        schedule.log_alpha_bar(tau), lam * schedule.log_alpha_bar(t), rtol=1e-10, atol=1e-12
    )


def test_eq8_equals_the_generic_power_rule_on_the_vp():
    vp = VPSchedule()
    g = torch.Generator().manual_seed(0)
    t = torch.rand(64, 1, generator=g, dtype=torch.float64)
    lam = torch.rand(1, 64, generator=g, dtype=torch.float64)
    closed = vp.rectified_time(t, lam)  # eq. 8
    generic = Schedule.rectified_time(vp, t, lam)  # inversion of λ·log ᾱ(t)
    torch.testing.assert_close(closed, generic, rtol=1e-12, atol=1e-13)
    # and eq. 8 written out from the paper, independent of the library's algebra
    bmin, bmax = 0.1, 20.0
    d = bmax - bmin
    paper = (-bmin + torch.sqrt(bmin**2 + 2 * d * bmin * t * lam + d**2 * t**2 * lam)) / d
    torch.testing.assert_close(closed, paper, rtol=1e-12, atol=1e-14)
    # log ᾱ(t) = −(β_min t + ½(β_max − β_min) t²): the power rule in closed form
    log_ab = lambda s: -(bmin * s + 0.5 * d * s * s)  # noqa: E731
    torch.testing.assert_close(log_ab(closed), lam * log_ab(t), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("method", ["own", "generic"])
def test_lambda_one_and_zero_are_exact(schedule, method):
    rect = (
        schedule.rectified_time
        if method == "own"
        else (lambda t, lam: Schedule.rectified_time(schedule, t, lam))
    )
    t = torch.linspace(0, schedule.t_max, 97, dtype=torch.float64)
    assert torch.equal(rect(t, 1.0), t)
    assert torch.equal(rect(t, torch.ones(97)), t)
    assert torch.equal(rect(t, 0.0), torch.zeros_like(t))
    assert torch.equal(rect(t, torch.zeros(97, dtype=torch.float64)), torch.zeros_like(t))


def test_monotone_in_lambda_and_in_t(schedule):
    t = torch.tensor([0.02, 0.1, 0.37, 0.5, 0.81, 1.0], dtype=torch.float64)[:, None]
    t = t * schedule.t_max
    lam = torch.linspace(0, 1, 4001, dtype=torch.float64)[None, :]
    tau = schedule.rectified_time(t, lam)
    assert (tau[:, 1:] >= tau[:, :-1]).all(), "τ must not decrease when λ grows"
    assert (tau[1:, :] >= tau[:-1, :]).all(), "τ must not decrease when t grows"
    assert (tau >= 0).all() and (tau <= t).all()
    # strictly increasing in λ for t > 0 (ᾱ is strictly decreasing)
    assert (tau[:, 1:] > tau[:, :-1]).all()


def test_elementwise_broadcasting_per_pixel(schedule):
    B, H, W = 3, 4, 5
    g = torch.Generator().manual_seed(1)
    t = torch.tensor([0.2, 0.55, 1.0], dtype=torch.float64).reshape(B, 1, 1, 1) * schedule.t_max
    lam = torch.rand(B, 1, H, W, generator=g, dtype=torch.float64)
    tau = schedule.rectified_time(t, lam)
    assert tau.shape == (B, 1, H, W)
    for b in range(B):
        for h in range(H):
            for w in range(W):
                one = schedule.rectified_time(float(t[b, 0, 0, 0]), float(lam[b, 0, h, w]))
                assert one.shape == ()
                assert tau[b, 0, h, w].item() == pytest.approx(one.item(), rel=1e-14, abs=1e-14)
    # one shared map for the whole batch, and one λ for the whole batch
    shared = schedule.rectified_time(t, lam[:1])
    assert shared.shape == (B, 1, H, W)
    torch.testing.assert_close(shared[0], tau[0], rtol=0, atol=0)
    assert schedule.rectified_time(t, 0.5).shape == (B, 1, 1, 1)


def test_unbroadcastable_shapes_raise(schedule):
    t = torch.full((2, 1, 1, 1), 0.5 * schedule.t_max)
    with pytest.raises(
        ValueError, match=r"t of shape \(2, 1, 1, 1\) and lam of shape \(3, 1, 4, 4\)"
    ):
        schedule.rectified_time(t, torch.rand(3, 1, 4, 4))
    with pytest.raises(ValueError, match="broadcast"):
        Schedule.rectified_time(schedule, torch.zeros(2), torch.zeros(3))


@pytest.mark.parametrize("lam", [-0.01, 1.01, math.nan, math.inf])
def test_lambda_outside_unit_interval_raises(schedule, lam):
    with pytest.raises(ValueError, match=r"^lam"):
        schedule.rectified_time(0.5 * schedule.t_max, torch.tensor([0.5, lam], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^lam"):
        Schedule.rectified_time(schedule, 0.5 * schedule.t_max, lam)


@pytest.mark.parametrize("frac", [-0.01, 1.01, math.nan])
def test_time_outside_schedule_raises(schedule, frac):
    with pytest.raises(ValueError, match=r"^t"):
        schedule.rectified_time(frac * schedule.t_max, 0.5)


def test_float32_and_float64_inputs_agree_and_are_untouched(schedule):
    g = torch.Generator().manual_seed(2)
    lam32 = torch.rand(2, 1, 3, 3, generator=g)
    t32 = (torch.rand(2, 1, 1, 1, generator=g) * schedule.t_max).float()
    lam_before, t_before = lam32.clone(), t32.clone()
    a = schedule.rectified_time(t32, lam32)
    b = schedule.rectified_time(t32.double(), lam32.double())
    assert a.dtype == torch.float64
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.equal(lam32, lam_before) and torch.equal(t32, t_before)
    assert lam32.dtype == torch.float32


# --------------------------------------------------------------------------- start times
def test_start_times(schedule):
    g = torch.Generator().manual_seed(3)
    lam = torch.rand(2, 1, 4, 4, generator=g, dtype=torch.float64)
    lam[0, 0, 0, 0], lam[0, 0, 0, 1] = 0.0, 1.0
    Tk = schedule.start_times(lam)
    assert Tk.shape == lam.shape
    torch.testing.assert_close(Tk, schedule.rectified_time(schedule.t_max, lam), rtol=0, atol=0)
    assert Tk[0, 0, 0, 0].item() == 0.0 and Tk[0, 0, 0, 1].item() == schedule.t_max
    # a later (less noisy) isotropic start gives every pixel an earlier start
    half = schedule.start_times(lam, 0.5 * schedule.t_max)
    torch.testing.assert_close(half, schedule.rectified_time(0.5 * schedule.t_max, lam))
    assert (half <= Tk).all()
    # monotone in λ
    order = lam.flatten().argsort()
    assert (Tk.flatten()[order].diff() >= 0).all()
    with pytest.raises(ValueError, match=r"^t"):
        schedule.start_times(lam, 1.5 * schedule.t_max)


# ---------------------------------------------------------------- Theorem 1 by simulation
LAMS = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=torch.float64)
Y0 = torch.tensor([2.0, -1.5, 1.0, 0.5], dtype=torch.float64)  # one clean value per "pixel"
# Every column (pixel) of a path is driven by the same white noise: the columns are correlated,
# but each column's own marginal is what the theorem is about, and paths are independent.
# 8000 paths x 4 pixels stays below torch's parallel grain, which keeps the loops fast.
PATHS = 8_000


def _check_moments(y: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> None:
    """Empirical mean/variance of ``y (paths, K)`` within 4 standard errors of the targets."""
    n = y.shape[0]
    m_hat, v_hat = y.mean(0), y.var(0)
    se_m = (var / n).sqrt()
    se_v = var * math.sqrt(2 / (n - 1))
    assert ((m_hat - mean).abs() <= 4 * se_m).all(), (m_hat, mean, se_m)
    assert ((v_hat - var).abs() <= 4 * se_v).all(), (v_hat, var, se_v)


def test_theorem1_vp_sde_by_euler_maruyama():
    """dy_k = −½β(t)λ_k y_k dt + sqrt(β(t)λ_k) dw from y(0), up to t, has the isotropic marginal at
    τ_k: mean sqrt(ᾱ(τ_k))·y0, variance 1 − ᾱ(τ_k).

    Euler–Maruyama with β at step midpoints; its bias stays below 0.3 standard errors on both
    moments, while a wrong τ (e.g. τ = λt) misses the mean by many standard errors. (Forms that
    are nearly right, like τ = t·sqrt(λ), are left to the exact moment test below.)
    """
    vp = VPSchedule()
    t_end, n_steps = 0.4, 200
    dt = t_end / n_steps
    rates = vp.beta((torch.arange(n_steps, dtype=torch.float64) + 0.5) * dt)[:, None] * LAMS
    g = torch.Generator().manual_seed(4)
    y = Y0.expand(PATHS, -1).clone()
    for rate in rates:
        z = torch.randn(PATHS, 1, generator=g, dtype=torch.float64)
        y = y - 0.5 * rate * y * dt + (rate * dt).sqrt() * z
    ab_tau = vp.alpha_bar(vp.rectified_time(t_end, LAMS))
    # λ = 0 never moves: the pixel stays clean
    assert torch.equal(y[:, 0], Y0[0].expand(PATHS))
    _check_moments(y[:, 1:], ab_tau[1:].sqrt() * Y0[1:], 1 - ab_tau[1:])


def test_theorem1_vp_moment_equations():
    """The same statement without sampling noise: integrate the moment ODEs
    m' = −½βλ m, v' = βλ(1 − v) with RK4 and compare with the isotropic marginal at τ."""
    vp = VPSchedule()
    t_end, n_steps = 0.9, 400
    h = t_end / n_steps

    def rhs(s: float, m: torch.Tensor, v: torch.Tensor):
        r = (vp.beta_min + s * (vp.beta_max - vp.beta_min)) * LAMS
        return -0.5 * r * m, r * (1 - v)

    m, v = Y0.clone(), torch.zeros_like(Y0)
    for i in range(n_steps):
        s = i * h
        k1 = rhs(s, m, v)
        k2 = rhs(s + h / 2, m + h / 2 * k1[0], v + h / 2 * k1[1])
        k3 = rhs(s + h / 2, m + h / 2 * k2[0], v + h / 2 * k2[1])
        k4 = rhs(s + h, m + h * k3[0], v + h * k3[1])
        m = m + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        v = v + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    ab_tau = vp.alpha_bar(vp.rectified_time(t_end, LAMS))
    torch.testing.assert_close(m, ab_tau.sqrt() * Y0, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(v, 1 - ab_tau, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_theorem1_discrete_chain_moments(kind):
    """The discrete per-pixel chain y ← sqrt(α_s^λ) y + sqrt(1 − α_s^λ) z, s = 1..t, has exactly
    the moments of the isotropic marginal at τ (T = 1000, t = 300)."""
    schedule = SCHEDULES[kind]()
    t_end = 300
    m, v = Y0.clone(), torch.zeros_like(Y0)
    for a in (1 - schedule.betas[:t_end]).tolist():
        a_lam = a**LAMS
        m, v = a_lam.sqrt() * m, a_lam * v + (1 - a_lam)
    ab_tau = schedule.alpha_bar(schedule.rectified_time(float(t_end), LAMS))
    torch.testing.assert_close(m, ab_tau.sqrt() * Y0, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(v, 1 - ab_tau, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_theorem1_discrete_chain_by_simulation(kind):
    """The same chain sampled (T = 100, t = 60): empirical moments match the marginal at τ."""
    schedule = BUILDERS_SMALL[kind]()
    t_end = 60
    g = torch.Generator().manual_seed(5)
    y = Y0.expand(PATHS, -1).clone()
    for a in (1 - schedule.betas[:t_end]).tolist():
        a_lam = a**LAMS
        z = torch.randn(PATHS, 1, generator=g, dtype=torch.float64)
        y = a_lam.sqrt() * y + (1 - a_lam).sqrt() * z
    ab_tau = schedule.alpha_bar(schedule.rectified_time(float(t_end), LAMS))
    assert torch.equal(y[:, 0], Y0[0].expand(PATHS))
    _check_moments(y[:, 1:], ab_tau[1:].sqrt() * Y0[1:], 1 - ab_tau[1:])


BUILDERS_SMALL = {
    "linear": lambda: DiscreteSchedule.linear(100, 1e-3, 0.05),
    "cosine": lambda: DiscreteSchedule.cosine(100),
}
