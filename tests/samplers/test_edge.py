"""The edge-preserving posterior step (EP eq. 12–14)."""

from __future__ import annotations

import math

import pytest
import torch

from nidiff.noise.edge import CosineTau, EdgePreservingNoise, LinearTau, SigmoidTau, SobelEdges
from nidiff.noise.isotropic import IsotropicNoise
from nidiff.samplers.edge import EdgePosterior, edge_posterior_terms
from nidiff.samplers.transition import Transition
from nidiff.schedule import DiscreteSchedule

SCHED = DiscreteSchedule.linear(1000)
PAIRS = [
    (1, 0),
    (2, 1),
    (10, 9),
    (500, 499),
    (1000, 999),
    (1000, 0),
    (1000, 500),
    (600, 20),
    (250, 1),
    (37, 0),
]


def one(u):
    return torch.ones_like(u)


def randn(shape, seed, dtype=torch.float64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def ddpm_posterior(x_t, x0_hat, t, s):
    """Closed-form DDPM q(x_s | x_t, x0) written out independently, float64 scalars."""
    ab_t, ab_s = float(SCHED.alpha_bar(t)), float(SCHED.alpha_bar(s))
    mean = (
        math.sqrt(ab_s) * (1 - ab_t / ab_s) / (1 - ab_t) * x0_hat
        + math.sqrt(ab_t / ab_s) * (1 - ab_s) / (1 - ab_t) * x_t
    )
    var = (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
    return mean, var


@pytest.mark.parametrize(("t", "s"), PAIRS)
def test_tau_one_reduces_to_ddpm(t, s):
    rule = EdgePosterior(EdgePreservingNoise(SCHED, tau=one))
    x_t, out = randn((2, 3, 8, 8), 0), randn((2, 3, 8, 8), 1)
    step = rule.transition(x_t, out, t, s)
    assert isinstance(step, Transition) and isinstance(step.noise, IsotropicNoise)
    x0_hat = (x_t - out) / math.sqrt(float(SCHED.alpha_bar(t)))
    mean, var = ddpm_posterior(x_t, x0_hat, t, s)
    assert torch.allclose(step.x0_hat, x0_hat, atol=1e-10, rtol=0)
    assert torch.allclose(step.mean, mean, atol=1e-10, rtol=0)
    assert torch.allclose(step.std, torch.full_like(step.std, math.sqrt(var)), atol=1e-10, rtol=0)
    assert step.eps_hat is out


@pytest.mark.parametrize(("t", "s"), PAIRS)
def test_tau_one_matches_the_ddpm_rule(t, s):
    from nidiff.samplers.ddim import DDPM

    rule = EdgePosterior(EdgePreservingNoise(SCHED, tau=one))
    x_t, eps = randn((2, 3, 8, 8), 2), randn((2, 3, 8, 8), 3)
    out = math.sqrt(1 - float(SCHED.alpha_bar(t))) * eps  # σ_t ⊙ ε with σ_t = sqrt(1 − ᾱ_t)
    ours, ref = rule.transition(x_t, out, t, s), DDPM(SCHED).transition(x_t, eps, t, s)
    assert torch.allclose(ours.mean, ref.mean, atol=1e-10, rtol=0)
    assert torch.allclose(ours.x0_hat, ref.x0_hat, atol=1e-10, rtol=0)
    assert torch.allclose(ours.std, torch.as_tensor(ref.std).expand_as(ours.std), atol=1e-10)


@pytest.mark.parametrize(
    "tau", [LinearTau(0.5), CosineTau(0.5), SigmoidTau(0.5, 10.0), LinearTau(1.0)], ids=repr
)
def test_forward_posterior_variance_is_nonnegative(tau, capsys):
    ep = EdgePreservingNoise(SCHED, tau=tau)
    x0 = randn((3, 1, 8, 8), 4).clamp(-1, 1)
    x0[1] = torch.sign(x0[1])  # strong edges
    x0[2, :, :, 4:] += 1.0  # one dominant step: weak edges elsewhere
    ts = torch.arange(1, 1001, dtype=torch.float64)
    pairs = [
        (ts, ts - 1),
        (torch.full((50,), 1000.0), torch.linspace(0, 999, 50)),
        (torch.full((50,), 500.0), torch.linspace(0, 499, 50)),
        (torch.linspace(2, 1000, 50), torch.ones(50)),
    ]
    worst = math.inf
    for t, s in pairs:
        for i in range(x0.shape[0]):
            img = x0[i : i + 1].expand(t.numel(), -1, -1, -1)
            var_t, var_s = ep.sigma(img, t).square(), ep.sigma(img, s).square()
            gamma2 = (SCHED.alpha_bar(t) / SCHED.alpha_bar(s)).reshape(-1, 1, 1, 1)
            var_ts = var_t - gamma2 * var_s
            worst = min(worst, float(var_ts.min()))
            # the bound σ²_{t|s} ≥ (σ_s²/(1−ᾱ_s))·(1−γ²) behind the floor's docstring (s > 0)
            keep = s > 0
            bound = (
                var_s[keep]
                / (1 - SCHED.alpha_bar(s[keep])).reshape(-1, 1, 1, 1)
                * (1 - gamma2[keep])
            )
            assert bool((var_ts[keep] >= bound * (1 - 1e-9)).all())
    with capsys.disabled():
        print(f"\nmin sigma^2_(t|s) for {tau!r}: {worst:.3e}")
    assert worst > 0


def test_edges_change_the_step_and_std_is_a_map():
    ep = EdgePreservingNoise(SCHED)
    rule = EdgePosterior(ep)
    x0 = torch.zeros(1, 3, 12, 12, dtype=torch.float64)
    x0[..., 6:] = 1.0
    t, s = 200, 150
    x_t, target = ep.forward(x0, t, randn(x0.shape, 5))
    step = rule.transition(x_t, target, t, s)  # a perfect model: x0_hat = x0
    assert torch.allclose(step.x0_hat, x0, atol=1e-12)
    assert step.std.shape == (1, 1, 12, 12)
    _, var = ddpm_posterior(x_t, x0, t, s)
    on_edge, flat = step.std[0, 0, :, 5:7], step.std[0, 0, :, :3]
    assert torch.allclose(flat, torch.full_like(flat, math.sqrt(var)), atol=1e-12)
    assert bool((on_edge < math.sqrt(var)).all())
    # matches eq. 13-14 written literally (no edge case at s > 0)
    sig_t, sig_s = ep.sigma(x0, t), ep.sigma(x0, s)
    ab_t, ab_s = SCHED.alpha_bar(t), SCHED.alpha_bar(s)
    g = (ab_t / ab_s).sqrt()
    var_ts = sig_t**2 - g**2 * sig_s**2
    v = 1 / (1 / sig_s**2 + g**2 / var_ts)
    m = v * (g / var_ts * x_t + ab_s.sqrt() / sig_s**2 * x0)
    assert torch.allclose(step.std, v.sqrt(), atol=1e-12)
    assert torch.allclose(step.mean, m, atol=1e-12)


@pytest.mark.parametrize("tau", [LinearTau(0.5), one], ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_last_step_returns_x0_hat(tau, dtype):
    rule = EdgePosterior(EdgePreservingNoise(SCHED, tau=tau))
    x_t, out = randn((2, 3, 8, 8), 6, dtype), randn((2, 3, 8, 8), 7, dtype)
    x_copy, out_copy = x_t.clone(), out.clone()
    for t in [1, 40, 1000]:
        step = rule.transition(x_t, out, torch.tensor([t, t]), 0)
        assert step.mean.dtype == step.std.dtype == step.x0_hat.dtype == dtype
        assert bool(torch.isfinite(step.mean).all()) and bool(torch.isfinite(step.std).all())
        assert torch.equal(step.mean, step.x0_hat)
        assert torch.equal(step.std, torch.zeros_like(step.std))
        assert step.is_deterministic and torch.equal(step.sample(None), step.x0_hat)
    assert torch.equal(x_t, x_copy) and torch.equal(out, out_copy)


def test_float32_matches_float64():
    rule = EdgePosterior(EdgePreservingNoise(SCHED))
    x_t, out = randn((2, 3, 8, 8), 8), 0.3 * randn((2, 3, 8, 8), 9)
    a, b = rule.transition(x_t, out, 300, 280), rule.transition(x_t.float(), out.float(), 300, 280)
    assert torch.allclose(b.mean.double(), a.mean, atol=1e-5)
    assert torch.allclose(b.std.double(), a.std, atol=1e-6)


def test_floor_keeps_a_non_monotone_tau_finite():
    # τ decreasing in u makes σ²_{t|s} negative on edges; the floor gives the v → 0 limit.
    rule = EdgePosterior(EdgePreservingNoise(SCHED, tau=lambda u: 1 - u))
    x_t, out = randn((1, 1, 8, 8), 10), randn((1, 1, 8, 8), 11)
    step = rule.transition(x_t, out, 600, 300)
    assert bool(torch.isfinite(step.mean).all()) and bool((step.std >= 0).all())


def test_edge_posterior_terms_limits():
    ab_t, ab_s = torch.tensor(0.5, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    w_xt, w_x0, v = edge_posterior_terms(ab_t, ab_s, torch.tensor(0.3), torch.tensor(0.0))
    assert float(w_xt) == 0.0 and float(w_x0) == 1.0 and float(v) == 0.0


def test_bad_inputs():
    rule = EdgePosterior(EdgePreservingNoise(SCHED))
    x = randn((2, 3, 8, 8), 12)
    with pytest.raises(ValueError, match="t_prev must be < t"):
        rule.transition(x, x, 10, 10)
    with pytest.raises(ValueError, match="t_prev must be < t"):
        rule.transition(x, x, torch.tensor([10, 5]), 7)
    with pytest.raises(ValueError, match="outside the allowed range"):
        rule.transition(x, x, 1001, 10)
    with pytest.raises(ValueError, match="t_prev"):
        rule.transition(x, x, 10, -1)
    with pytest.raises(ValueError, match="must match x_t"):
        rule.transition(x, x[:, :1], 10, 5)
    with pytest.raises(ValueError, match="does not fit"):
        rule.transition(x, x, torch.tensor([10, 20, 30]), 5)


class CountingEdges:
    """A custom edge operator that counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return SobelEdges()(x)


@pytest.mark.parametrize(
    ("t", "s", "calls"), [(300, 280, 1), (510, 490, 1), (800, 780, 0), (40, 0, 0)]
)
def test_edge_map_is_computed_once_per_step(t, s, calls):
    edges = CountingEdges()
    rule = EdgePosterior(EdgePreservingNoise(SCHED, edges=edges))
    rule.transition(randn((2, 1, 8, 8), 13), randn((2, 1, 8, 8), 14), t, s)
    assert edges.calls == calls


@pytest.mark.parametrize("tau", [LinearTau(0.5), CosineTau(0.5), lambda u: 1 - u], ids=repr)
def test_transition_matches_literal_terms(tau):
    # the factored form (q map) against eq. 13-14 via edge_posterior_terms, float64
    ep = EdgePreservingNoise(SCHED, tau=tau)
    rule = EdgePosterior(ep)
    x_t, out = randn((2, 3, 10, 10), 15), 0.5 * randn((2, 3, 10, 10), 16)
    for t, s in [(300, 280), (2, 1), (499, 498), (510, 490), (600, 300), (1000, 999), (37, 0)]:
        step = rule.transition(x_t, out, t, s)
        sig_t, sig_s = ep.sigma(step.x0_hat, t), ep.sigma(step.x0_hat, s)
        ab_t, ab_s = SCHED.alpha_bar(t), SCHED.alpha_bar(s)
        w_xt, w_x0, v = edge_posterior_terms(ab_t, ab_s, sig_t, sig_s)
        assert torch.allclose(step.mean, w_xt * x_t + w_x0 * step.x0_hat, atol=1e-10, rtol=0)
        assert torch.allclose(step.std.expand_as(v), v.sqrt(), atol=1e-10, rtol=0)


def test_per_batch_times_match_scalar_steps():
    # one batch spanning the edge-preserving phase, the crossing, the isotropic phase, s = 0
    rule = EdgePosterior(EdgePreservingNoise(SCHED))
    pairs = [(300.0, 280.0), (510.0, 490.0), (800.0, 780.0), (40.0, 0.0)]
    x_t, out = randn((4, 3, 8, 8), 17), 0.5 * randn((4, 3, 8, 8), 18)
    t = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    s = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    both = rule.transition(x_t, out, t, s)
    assert both.std.shape == (4, 1, 8, 8)
    for i, (ti, si) in enumerate(pairs):
        one = rule.transition(x_t[i : i + 1], out[i : i + 1], ti, si)
        assert torch.allclose(both.mean[i : i + 1], one.mean, atol=1e-12, rtol=0)
        assert torch.allclose(both.std[i : i + 1], one.std.expand(1, 1, 8, 8), atol=1e-12, rtol=0)
    assert torch.equal(both.mean[3], both.x0_hat[3]) and float(both.std[3].abs().max()) == 0.0


@pytest.mark.parametrize(("t", "s"), [(300, 280), (499, 498), (2, 1), (510, 490), (900, 899)])
def test_float32_is_computed_in_float32_and_stays_accurate(t, s):
    ep = EdgePreservingNoise(SCHED)
    rule = EdgePosterior(ep)
    x0 = torch.tanh(3 * randn((4, 1, 7, 7), 19)).repeat_interleave(4, -1).repeat_interleave(4, -2)
    x_t, target = ep.forward(x0, t, randn(x0.shape, 20))
    out = target + 0.05 * randn(x0.shape, 21)
    a = rule.transition(x_t, out, t, s)
    b = rule.transition(x_t.float(), out.float(), t, s)
    assert b.mean.dtype == b.std.dtype == b.x0_hat.dtype == torch.float32
    assert float((b.mean.double() - a.mean).abs().max()) < 1e-5
    # q = 1 - K (B_t/B_s)^2 loses a few float32 ulps to cancellation on adjacent steps
    assert float(((b.std.double() - a.std) / a.std).abs().max()) < 1e-4
