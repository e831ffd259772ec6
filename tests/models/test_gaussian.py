"""GaussianDenoiser: the closed-form oracle checked against independent estimates."""

from __future__ import annotations

import math

import pytest
import torch

from nidiff.models import Denoiser, GaussianDenoiser
from nidiff.noise.diagonal import DiagonalNoise
from nidiff.noise.gff import GFFNoise
from nidiff.noise.isotropic import IsotropicNoise
from nidiff.schedule import DiscreteSchedule

SCHED = DiscreteSchedule.linear(1000)
f64 = torch.float64


def random_spd(D: int, g: torch.Generator, floor: float = 0.1) -> torch.Tensor:
    """A random SPD matrix with correlated entries and eigenvalues >= ``floor``."""
    W = torch.randn(D, D, generator=g, dtype=f64)
    return W @ W.T / D + floor * torch.eye(D, dtype=f64)


def noises(dims):
    g = torch.Generator().manual_seed(7)
    std = 0.5 + torch.rand(1, *dims, generator=g, dtype=f64)
    return {"iso": IsotropicNoise(), "diag": DiagonalNoise(std), "gff": GFFNoise(1.0)}


def simulate(dims, noise, t_map, n, seed):
    """Draw (x0, x_t, ε) from the forward process with a per-element time map ``(1, *dims)``."""
    g = torch.Generator().manual_seed(seed)
    D = math.prod(dims)
    mu = torch.randn(dims, generator=g, dtype=f64)
    C = random_spd(D, g)
    x0 = mu + (torch.randn(n, D, generator=g, dtype=f64) @ torch.linalg.cholesky(C).T).reshape(
        n, *dims
    )
    eps = torch.randn(n, *dims, generator=g, dtype=f64)
    a, b = SCHED.coefficients(t_map)
    x_t = a * x0 + b * noise.color(eps)
    return mu, C, x0, x_t, eps


def regress(x_t, y, probe):
    """OLS of ``y`` on ``[1, x_t]``; returns the fit at ``probe`` and its standard errors."""
    n = x_t.shape[0]
    X = torch.cat([torch.ones(n, 1, dtype=f64), x_t.reshape(n, -1)], 1)
    P = torch.cat([torch.ones(len(probe), 1, dtype=f64), probe.reshape(len(probe), -1)], 1)
    beta = torch.linalg.lstsq(X, y.reshape(n, -1)).solution
    resid = y.reshape(n, -1) - X @ beta
    lev = (P * torch.linalg.solve(X.T @ X, P.T).T).sum(1, keepdim=True)  # x̃ᵀ(XᵀX)⁻¹x̃
    se = (lev * resid.square().sum(0) / (n - X.shape[1])).sqrt()  # (probe, D)
    return P @ beta, se, resid


@pytest.mark.parametrize("kind", ["iso", "diag", "gff"])
@pytest.mark.parametrize("per_pixel", [False, True])
def test_matches_monte_carlo_regression(kind, per_pixel):
    # E[x0 | x_t] and E[ε | x_t] are affine in x_t for Gaussian data, so least squares on a large
    # simulated sample estimates them without any of the oracle's algebra.
    dims = (1, 2, 4)
    noise = noises(dims)[kind]
    if per_pixel:
        t_map = torch.linspace(50, 700, 8, dtype=f64).reshape(1, *dims)
    else:
        t_map = torch.full((1, *dims), 300.0, dtype=f64)
    n = 40_000
    mu, C, x0, x_t, eps = simulate(dims, noise, t_map, n, seed=1)
    model = GaussianDenoiser(mu, C, SCHED, noise)
    probe = x_t[:64]
    t = t_map if per_pixel else torch.tensor(300.0)
    for name, target, pred in (("x0", x0, model.x0_hat(probe, t)), ("eps", eps, model(probe, t))):
        fit, se, _ = regress(x_t, target, probe)
        z = ((fit - pred.reshape(64, -1)).abs() / se).max().item()
        # 512 compared values: |z| < 5.5 fails by chance with probability < 2e-5
        assert z < 5.5, f"{kind} per_pixel={per_pixel} {name}: max |MC - oracle| = {z:.2f} s.e."
    if not per_pixel:  # the residual covariance of the x0 regression is Cov(x0 | x_t)
        resid = regress(x_t, x0, probe)[2]
        P = model.posterior_cov(300.0)
        se = ((P.diag()[:, None] * P.diag()[None] + P.square()) / n).sqrt()
        z = ((resid.T @ resid / n - P).abs() / se).max().item()
        assert z < 5.5, f"posterior_cov: max deviation {z:.2f} s.e."


def test_one_dimensional_closed_form():
    mu, c, s = 0.7, 2.0, 1.5
    model = GaussianDenoiser(
        torch.tensor([mu]), torch.tensor([[c]]), SCHED, DiagonalNoise(torch.tensor([s]))
    )
    x = torch.linspace(-3, 3, 7, dtype=f64)[:, None]
    a, b = (v.item() for v in SCHED.coefficients(400.0))
    m = a * a * c + b * b * s * s
    expected = mu + c * a / m * (x - a * mu)
    torch.testing.assert_close(model.x0_hat(x, 400.0), expected)
    torch.testing.assert_close(model(x, 400.0), (x - a * expected) / (b * s))
    torch.testing.assert_close(
        model.posterior_cov(400.0), torch.tensor([[c - c * a * a * c / m]], dtype=f64)
    )


def test_tiny_covariance_gives_the_mean():
    dims = (1, 4, 4)
    g = torch.Generator().manual_seed(2)
    mu = torch.randn(dims, generator=g, dtype=f64)
    model = GaussianDenoiser(mu, 1e-12 * torch.eye(16, dtype=f64), SCHED, GFFNoise())
    x = torch.randn(5, *dims, generator=g, dtype=f64)
    for t in (10.0, 500.0, 1000.0):
        err = (model.x0_hat(x, t) - mu).abs().max().item()
        assert err < 1e-6, f"t={t}: |x0_hat - mu| = {err:.2e}"


@pytest.mark.parametrize("kind", ["iso", "diag", "gff"])
def test_time_shapes_agree(kind):
    dims = (2, 4, 4)
    noise = noises(dims)[kind]
    g = torch.Generator().manual_seed(3)
    model = GaussianDenoiser(
        torch.randn(dims, generator=g, dtype=f64), random_spd(32, g), SCHED, noise
    )
    x = torch.randn(3, *dims, generator=g, dtype=f64)
    ref = model(x, torch.tensor(250.0))
    torch.testing.assert_close(model(x, torch.full((3, 1, 4, 4), 250.0, dtype=f64)), ref)
    torch.testing.assert_close(model(x, torch.full((3,), 250.0, dtype=f64)), ref)
    ts = torch.tensor([10.0, 250.0, 900.0], dtype=f64)
    per_sample = model(x, ts)
    for i in range(3):
        torch.testing.assert_close(per_sample[i : i + 1], model(x[i : i + 1], ts[i]))


def test_tweedie_score():
    # ε̂ = −B Σ^{1/2} ∇ log p_t(x_t), with the score from autograd of the Gaussian marginal.
    dims = (1, 4, 4)
    noise = GFFNoise(1.0)
    g = torch.Generator().manual_seed(4)
    mu, C = torch.randn(dims, generator=g, dtype=f64), random_spd(16, g)
    model = GaussianDenoiser(mu, C, SCHED, noise)
    a, b = SCHED.coefficients(200.0)
    Sigma = noise.apply(torch.eye(16, dtype=f64).reshape(16, *dims)).reshape(16, 16)
    marginal = torch.distributions.MultivariateNormal(a * mu.reshape(-1), a * a * C + b * b * Sigma)
    x = torch.randn(6, *dims, generator=g, dtype=f64).requires_grad_(True)
    (score,) = torch.autograd.grad(marginal.log_prob(x.reshape(6, -1)).sum(), x)
    torch.testing.assert_close(model.score(x.detach(), 200.0), score)
    torch.testing.assert_close(model(x.detach(), 200.0), -b * noise.color(score))


@pytest.mark.parametrize("dims", [(6,), (2, 3, 4)])
def test_dtypes_and_shapes(dims):
    D = math.prod(dims)
    g = torch.Generator().manual_seed(5)
    model = GaussianDenoiser(torch.randn(dims, generator=g), random_spd(D, g), SCHED)
    assert isinstance(model, Denoiser)
    x64 = torch.randn(4, *dims, generator=g, dtype=f64)
    out64 = model(x64, 300.0)
    out32 = model(x64.float(), torch.tensor(300.0), cond=None)
    assert out64.dtype == f64 and out32.dtype == torch.float32 and out32.shape == x64.shape
    torch.testing.assert_close(out32, out64.float(), rtol=1e-5, atol=1e-5)
    assert model.x0_hat(x64.float(), 300.0).dtype == torch.float32


def test_t_zero_returns_zero_noise_and_x():
    g = torch.Generator().manual_seed(6)
    # a singular C is fine at t = 0 (x̂0 = x_t without any solve)
    W = torch.randn(8, 3, generator=g, dtype=f64)
    model = GaussianDenoiser(torch.zeros(8, dtype=f64), W @ W.T, SCHED)
    x = torch.randn(4, 8, generator=g, dtype=f64)
    assert torch.equal(model(x, 0.0), torch.zeros_like(x))
    assert torch.equal(model.x0_hat(x, 0.0), x)
    assert torch.equal(model.posterior_cov(0.0), torch.zeros(8, 8, dtype=f64))


def test_per_pixel_zero_time_keeps_clean_pixels():
    g = torch.Generator().manual_seed(8)
    model = GaussianDenoiser(torch.zeros(1, 2, 2, dtype=f64), random_spd(4, g), SCHED)
    x = torch.randn(3, 1, 2, 2, generator=g, dtype=f64)
    t = torch.tensor([[[[0.0, 300.0], [600.0, 0.0]]]], dtype=f64)
    x0 = model.x0_hat(x, t)
    torch.testing.assert_close(x0[..., 0, 0], x[..., 0, 0])
    torch.testing.assert_close(x0[..., 1, 1], x[..., 1, 1])
    eps = model(x, t)
    assert torch.equal(eps[..., 0, 0], torch.zeros_like(eps[..., 0, 0]))


class _FakeEdgeNoise:
    data_conditioned = True

    def sigma(self, x0, t): ...

    def at(self, x0, t): ...


def test_errors():
    C = torch.eye(4, dtype=f64)
    with pytest.raises(ValueError, match="EmpiricalDenoiser"):
        GaussianDenoiser(torch.zeros(4), C, SCHED, _FakeEdgeNoise())
    with pytest.raises(ValueError, match="cov"):
        GaussianDenoiser(torch.zeros(4), torch.eye(3), SCHED)
    with pytest.raises(ValueError, match="symmetric"):
        GaussianDenoiser(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]), SCHED)
    with pytest.raises(ValueError, match="semi-definite"):
        GaussianDenoiser(torch.zeros(2), torch.tensor([[1.0, 0.0], [0.0, -1.0]]), SCHED)
    model = GaussianDenoiser(torch.zeros(1, 2, 2), C, SCHED)
    with pytest.raises(ValueError, match="must be"):
        model(torch.zeros(3, 4), 10.0)
    with pytest.raises(ValueError, match="must be"):
        model(torch.zeros(3, 1, 2, 3), 10.0)
    with pytest.raises(ValueError):
        model(torch.zeros(3, 1, 2, 2), torch.zeros(2))
    with pytest.raises(ValueError):
        model(torch.zeros(3, 1, 2, 2), 2000.0)
    with pytest.raises(ValueError, match="scalar"):
        model.posterior_cov(torch.zeros(2))
