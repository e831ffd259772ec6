"""EmpiricalDenoiser: the optimal denoiser of a finite dataset."""

from __future__ import annotations

import math

import pytest
import torch

from nidiff.models import EmpiricalDenoiser, GaussianDenoiser
from nidiff.noise.diagonal import DiagonalNoise
from nidiff.noise.gff import GFFNoise
from nidiff.noise.isotropic import IsotropicNoise
from nidiff.schedule import DiscreteSchedule

SCHED = DiscreteSchedule.linear(1000)
f64 = torch.float64
DIMS = (1, 4, 4)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_noise(kind: str):
    std = 0.5 + torch.rand(1, *DIMS, generator=gen(11), dtype=f64)
    return {"iso": IsotropicNoise(), "diag": DiagonalNoise(std), "gff": GFFNoise(1.0)}[kind]


def brute_weights(data, x_t, t_map, noise):
    """log p(x_t | x_i) for every pair, by whitening each difference (no shortcuts)."""
    a, b = SCHED.coefficients(t_map)  # broadcastable to (B, *dims)
    diff = x_t[:, None] - a[:, None] * data[None]  # (B, N, *dims)
    z = noise.whiten((diff / b[:, None]).reshape(-1, *DIMS)).reshape(*diff.shape[:2], -1)
    return (-0.5 * z.square().sum(-1)).softmax(1)


@pytest.mark.parametrize("kind", ["iso", "diag", "gff"])
def test_weights_match_brute_force(kind):
    noise = make_noise(kind)
    data = torch.randn(7, *DIMS, generator=gen(1), dtype=f64)
    model = EmpiricalDenoiser(data, SCHED, noise)
    x = torch.randn(5, *DIMS, generator=gen(2), dtype=f64)
    t_pix = torch.linspace(20, 300, 16, dtype=f64).reshape(1, *DIMS).expand(5, *DIMS)
    for t in (
        torch.tensor(150.0),
        torch.tensor([30.0, 80.0, 150.0, 400.0, 999.0], dtype=f64),
        t_pix,
    ):
        t_map = t.reshape(-1, 1, 1, 1) if t.ndim < 2 else t
        w = model.weights(x, t)
        torch.testing.assert_close(w, brute_weights(data, x, t_map, noise))
        a, b = SCHED.coefficients(t_map)
        x0 = w @ data.reshape(7, -1)
        torch.testing.assert_close(model.x0_hat(x, t), x0.reshape(x.shape))
        torch.testing.assert_close(model(x, t), noise.whiten((x - a * x0.reshape(x.shape)) / b))


def test_single_point_is_returned():
    data = torch.randn(1, *DIMS, generator=gen(3), dtype=f64)
    model = EmpiricalDenoiser(data, SCHED, GFFNoise())
    x = 5 * torch.randn(4, *DIMS, generator=gen(4), dtype=f64)
    for t in (1.0, 500.0, 1000.0):
        torch.testing.assert_close(model.x0_hat(x, t), data.expand_as(x))


@pytest.mark.parametrize("kind", ["iso", "diag"])
def test_far_from_data_at_small_t_picks_the_nearest_point(kind):
    noise = make_noise(kind)
    data = torch.randn(50, *DIMS, generator=gen(5), dtype=f64)
    model = EmpiricalDenoiser(data, SCHED)
    x = 6.0 + torch.randn(8, *DIMS, generator=gen(6), dtype=f64)  # far from every x_i
    model = EmpiricalDenoiser(data, SCHED, noise)
    d2 = noise.whiten(x[:, None] - data[None].expand(8, *data.shape)).square().flatten(2).sum(-1)
    nearest = data[d2.argmin(1)]
    torch.testing.assert_close(model.x0_hat(x, 5.0), nearest)
    # at t = 0 the limit is the same hard choice, with zero noise
    torch.testing.assert_close(model.x0_hat(x, 0.0), nearest)
    assert torch.equal(model(x, 0.0), torch.zeros_like(x))


def test_per_pixel_zero_time_is_a_hard_constraint():
    # pixel (0, 0) is clean (t = 0): only data points that match x_t there can be x0; ties on it
    # are then broken by the soft pixels.
    data = torch.randn(6, *DIMS, generator=gen(7), dtype=f64)
    data[:3, 0, 0, 0] = 0.25  # three candidates share the clean pixel's value
    x = data[4:5].clone() + 0.01
    x[0, 0, 0, 0] = 0.25
    t = torch.full((1, *DIMS), 200.0, dtype=f64)
    t[0, 0, 0, 0] = 0.0
    w = EmpiricalDenoiser(data, SCHED).weights(x, t)
    assert torch.equal(w[0, 3:], torch.zeros(3, dtype=f64))
    ref = brute_weights(data[:3, :, :, :], x, t.clamp_min(1.0), IsotropicNoise())
    torch.testing.assert_close(w[0, :3], ref[0])


def test_agrees_with_gaussian_oracle_on_a_large_sample():
    # N samples of N(μ, C): the empirical posterior mean is a self-normalised importance
    # estimate of the Gaussian one, with error ~ 1/sqrt(effective sample size).
    g = gen(8)
    D = math.prod(DIMS)
    W = torch.randn(D, D, generator=g, dtype=f64)
    C = W @ W.T / D + 0.1 * torch.eye(D, dtype=f64)
    mu = torch.randn(DIMS, generator=g, dtype=f64)
    N = 20_000
    data = mu + (torch.randn(N, D, generator=g, dtype=f64) @ torch.linalg.cholesky(C).T).reshape(
        N, *DIMS
    )
    noise = GFFNoise()
    gauss = GaussianDenoiser(mu, C, SCHED, noise)
    emp = EmpiricalDenoiser(data, SCHED, noise)
    t = 600.0
    a, b = SCHED.coefficients(t)
    x = a * data[:16] + b * noise.color(torch.randn(16, *DIMS, generator=g, dtype=f64))
    err = (emp.x0_hat(x, t) - gauss.x0_hat(x, t)).abs().max().item()
    ess = (1 / emp.weights(x, t).square().sum(1)).min().item()
    tol = 6 * math.sqrt(float(gauss.posterior_cov(t).diag().max()) / ess)
    assert err < tol, f"max |empirical - Gaussian| = {err:.3e} >= {tol:.3e} (min ESS {ess:.0f})"


class _ScaledStdNoise:
    """A stand-in edge-preserving noise: σ_t(x_i) = sqrt(1 − ᾱ_t)·(1 + x_i²)^{-1/2}."""

    data_conditioned = True

    def sigma(self, x0, t):
        return SCHED.coefficients(t)[1] * (1 + x0.square()).rsqrt()

    def at(self, x0, t):
        return DiagonalNoise((1 + x0.square()).rsqrt())


def test_edge_likelihood_keeps_the_log_determinant():
    data = torch.randn(9, *DIMS, generator=gen(9), dtype=f64)
    x = torch.randn(3, *DIMS, generator=gen(10), dtype=f64)
    model = EmpiricalDenoiser(data, SCHED, _ScaledStdNoise())
    for t in (torch.tensor(300.0), torch.tensor([100.0, 300.0, 300.0], dtype=f64)):
        t_map = t.reshape(-1, 1, 1, 1)
        a = SCHED.coefficients(t_map)[0]
        sig = _ScaledStdNoise().sigma(data[None], t_map[:, None])
        logp = torch.distributions.Normal(a[:, None] * data[None], sig).log_prob(x[:, None])
        w = logp.flatten(2).sum(-1).softmax(1)
        torch.testing.assert_close(model.weights(x, t), w)
        x0 = (w @ data.reshape(9, -1)).reshape(x.shape)
        torch.testing.assert_close(model(x, t), x - a * x0)  # E[σ_t ⊙ ε | x_t], EP eq. 15


def test_edge_preserving_reduces_to_isotropic_when_tau_is_one():
    from nidiff.noise.edge import EdgePreservingNoise

    ep = EdgePreservingNoise(SCHED, tau=lambda u: torch.ones_like(u))
    data = torch.rand(12, 2, 4, 4, generator=gen(12), dtype=f64)
    x = torch.randn(4, 2, 4, 4, generator=gen(13), dtype=f64)
    emp_ep, emp_iso = EmpiricalDenoiser(data, SCHED, ep), EmpiricalDenoiser(data, SCHED)
    t_pix = 5 + 600 * torch.rand(4, 1, 4, 4, generator=gen(17), dtype=f64)
    for t in (torch.tensor(40.0), torch.tensor([10.0, 40.0, 40.0, 700.0], dtype=f64), t_pix):
        torch.testing.assert_close(emp_ep.weights(x, t), emp_iso.weights(x, t))
        b = SCHED.coefficients(t.reshape(-1, 1, 1, 1) if t.ndim < 2 else t)[1]
        torch.testing.assert_close(emp_ep(x, t), b * emp_iso(x, t))
    # with the paper's transition, edges get less noise: a different posterior that still runs
    paper = EmpiricalDenoiser(data, SCHED, EdgePreservingNoise(SCHED))
    w = paper.weights(x, torch.tensor(40.0))
    assert torch.allclose(w.sum(1), torch.ones(4, dtype=f64))
    assert not torch.allclose(w, emp_iso.weights(x, torch.tensor(40.0)))
    assert paper(x.float(), torch.tensor(40.0)).dtype == torch.float32


def test_chunking_does_not_change_the_result():
    data = torch.randn(37, *DIMS, generator=gen(14), dtype=f64)
    x = torch.randn(9, *DIMS, generator=gen(15), dtype=f64)
    t_pix = 100 + 800 * torch.rand(9, *DIMS, generator=gen(16), dtype=f64)
    for t in (torch.tensor(250.0), t_pix):
        big = EmpiricalDenoiser(data, SCHED, GFFNoise())(x, t)
        small = EmpiricalDenoiser(data, SCHED, GFFNoise(), chunk=100)(x, t)
        torch.testing.assert_close(small, big)


def test_errors():
    data = torch.randn(4, *DIMS, dtype=f64)
    with pytest.raises(ValueError, match="data"):
        EmpiricalDenoiser(torch.zeros(4, dtype=torch.long), SCHED)
    model = EmpiricalDenoiser(data, SCHED, GFFNoise())
    with pytest.raises(ValueError, match="must be"):
        model(torch.zeros(2, 16), 10.0)
    t = torch.full((2, *DIMS), 100.0, dtype=f64)
    t[0, 0, 0, 0] = 0.0
    with pytest.raises(ValueError, match="> 0"):
        model(torch.zeros(2, *DIMS, dtype=f64), t)
