"""The continuous linear VP schedule: closed-form log ᾱ vs the integral of β, and its inverse."""

from __future__ import annotations

import math

import pytest
import torch

from nidiff.schedule import VPSchedule


def _beta_ref(s: torch.Tensor, beta_min: float, beta_max: float) -> torch.Tensor:
    return beta_min + s * (beta_max - beta_min)


@pytest.mark.parametrize(("beta_min", "beta_max"), [(0.1, 20.0), (0.5, 3.0)])
def test_log_alpha_bar_is_minus_the_integral_of_beta(beta_min, beta_max):
    vp = VPSchedule(beta_min, beta_max)
    t = torch.tensor([0.0, 0.05, 0.3, 0.5, 0.77, 1.0], dtype=torch.float64)
    # composite Simpson on 2000 panels, independent of the closed form
    for ti in t.tolist():
        s = torch.linspace(0.0, ti, 2001, dtype=torch.float64)
        b = _beta_ref(s, beta_min, beta_max)
        h = ti / 2000
        integral = h / 3 * (b[0] + b[-1] + 4 * b[1:-1:2].sum() + 2 * b[2:-1:2].sum())
        torch.testing.assert_close(vp.log_alpha_bar(ti), -integral, rtol=1e-12, atol=1e-12)


def test_beta_is_the_rate_of_minus_log_alpha_bar():
    vp = VPSchedule()
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    h = 1e-5
    rate = -(vp.log_alpha_bar(t + h) - vp.log_alpha_bar(t - h)) / (2 * h)
    torch.testing.assert_close(rate, vp.beta(t), rtol=1e-8, atol=0)
    torch.testing.assert_close(vp.beta(t), _beta_ref(t, 0.1, 20.0), rtol=1e-14, atol=0)


def test_endpoints_and_monotonicity():
    vp = VPSchedule()
    assert vp.t_max == 1.0
    assert vp.alpha_bar(0.0).item() == 1.0
    assert vp.alpha_bar(1.0).item() == pytest.approx(math.exp(-(0.1 + 0.5 * 19.9)), rel=1e-14)
    ab = vp.alpha_bar(torch.linspace(0, 1, 10001, dtype=torch.float64))
    assert (ab[1:] < ab[:-1]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(), (9,), (2, 1, 4, 4)])
def test_time_of_alpha_bar_inverts_alpha_bar(dtype, shape):
    vp = VPSchedule()
    g = torch.Generator().manual_seed(0)
    t = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)
    t_before = t.clone()
    ab = vp.alpha_bar(t)
    assert ab.shape == t.shape and ab.dtype == torch.float64
    back = vp.time_of_alpha_bar(ab)
    torch.testing.assert_close(back, t.double(), rtol=0, atol=1e-12)
    assert torch.equal(t, t_before) and t.dtype == dtype


def test_inverse_at_the_ends():
    vp = VPSchedule()
    assert vp.time_of_alpha_bar(1.0).item() == 0.0
    assert vp.time_of_alpha_bar(vp.alpha_bar(1.0)).item() == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("bad", [-0.01, 1.01, math.nan, math.inf])
def test_time_outside_zero_one_raises(bad):
    vp = VPSchedule()
    with pytest.raises(ValueError, match=r"^t"):
        vp.alpha_bar(torch.tensor([0.5, bad], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^t"):
        vp.beta(bad)


@pytest.mark.parametrize(
    ("beta_min", "beta_max"),
    [(0.0, 20.0), (-1.0, 20.0), (5.0, 5.0), (5.0, 1.0), (0.1, math.inf), (math.nan, 20.0)],
)
def test_bad_parameters(beta_min, beta_max):
    with pytest.raises(ValueError, match="beta_min"):
        VPSchedule(beta_min, beta_max)


def test_repr():
    assert repr(VPSchedule()) == "VPSchedule(beta_min=0.1, beta_max=20.0)"
