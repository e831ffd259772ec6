"""Samplers driven by the exact Gaussian denoiser recover the data distribution.

Data ``x0 ~ N(μ, C)`` on toy ``2×4×4`` images with a structured ``C`` (a squared-exponential
kernel over pixel positions, coupled channels, random per-pixel scales). With the exact denoiser
every DDPM/DDIM step is affine in ``x_t`` plus Gaussian noise, so the law of the sampler's output
is Gaussian and computable exactly (:func:`chain_law`). That splits each check in two:

* discretisation: the chain's exact law vs ``N(μ, C)``, deterministic, first order in the step
  count;
* sampling: a batch of ``n`` samples vs the chain's exact law, with tolerances from the sampling
  error of a mean and covariance (in whitened coordinates: s.e. ``1/√n`` per mean entry and
  off-diagonal covariance entry, ``√(2/n)`` per variance).
"""

from __future__ import annotations

import math

import pytest
import torch

from nidiff.models import GaussianDenoiser
from nidiff.noise.base import dense_covariance
from nidiff.noise.diagonal import DiagonalNoise
from nidiff.noise.gff import GFFNoise
from nidiff.noise.isotropic import IsotropicNoise
from nidiff.samplers import DDIM, DDPM, predict_x0, q_sample, sample
from nidiff.schedule import DiscreteSchedule, custom_grid, linspace_grid

f64 = torch.float64
SCHED = DiscreteSchedule.linear(1000)
DIMS = (2, 4, 4)
D = math.prod(DIMS)
N_SAMPLES = 4000
Z_MAX = 5.5  # per-entry bound on |error| / s.e.; ~560 entries, chance failure < 1e-4


def _data_law() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], 1).to(f64)
    K = torch.exp(-torch.cdist(pos, pos).square() / (2 * 1.5**2))
    R = torch.tensor([[1.0, 0.6], [0.6, 1.0]], dtype=f64)
    scale = 0.5 + torch.rand(D, generator=g, dtype=f64)
    C = scale[:, None] * (torch.kron(R, K) + 0.3 * torch.eye(D, dtype=f64)) * scale[None]
    return torch.randn(DIMS, generator=g, dtype=f64), C


MU, C = _data_law()
L_C = torch.linalg.cholesky(C)


def make_noise(kind: str):
    g = torch.Generator().manual_seed(1)
    std = 0.5 + torch.rand(1, *DIMS, generator=g, dtype=f64)
    return {"iso": IsotropicNoise(), "diag": DiagonalNoise(std), "gff": GFFNoise(1.0)}[kind]


def quad_grid(steps: int):
    """Times ``T (i/N)²``: dense near ``t = 0``, where the posterior changes fastest."""
    return custom_grid(SCHED.t_max * (torch.arange(steps, 0, -1, dtype=f64) / steps) ** 2)


def make_rule(name: str, noise):
    return DDPM(SCHED, noise) if name == "ddpm" else DDIM(SCHED, noise, eta=0.0)


def start_law(grid, noise):
    """The exact marginal of ``x_T``: ``N(a μ, a² C + b² Σ)``."""
    a, b = SCHED.coefficients(grid.t[0])
    return a * MU.reshape(-1), a * a * C + b * b * dense_covariance(noise, DIMS)


def chain_law(model, rule, grid, m, V):
    """Push ``N(m, V)`` through the sampler: each step is ``x' = P x + q + s Σ^{1/2} z``.

    ``P`` and ``q`` are read off the rule's mean at ``0`` and the basis vectors (the exact
    denoiser is affine in ``x_t``), so this uses the library's own step code."""
    X = torch.cat([torch.zeros(1, D, dtype=f64), torch.eye(D, dtype=f64)]).reshape(D + 1, *DIMS)
    Sigma = dense_covariance(rule.noise, DIMS)
    for t, t_prev in grid:
        tr = rule.transition(X, model(X, t), t, t_prev)
        Y = tr.mean.reshape(D + 1, D)
        P = (Y[1:] - Y[0]).T
        m, V = P @ m + Y[0], P @ V @ P.T + float(tr.std) ** 2 * Sigma
    return m, V


def whitened_errors(m, V, ref_m, ref_L):
    """Max |mean| and max |cov − I| after whitening by the reference law ``N(ref_m, L Lᵀ)``."""
    mw = torch.linalg.solve_triangular(ref_L, (m - ref_m)[:, None], upper=False)[:, 0]
    Vw = torch.linalg.solve_triangular(ref_L, V, upper=False)
    Vw = torch.linalg.solve_triangular(ref_L, Vw.T, upper=False)
    return mw.abs().max().item(), (Vw - torch.eye(D, dtype=f64)).abs().max().item()


def sample_z_scores(x, ref_m, ref_L):
    """Max |z| of the sample mean and covariance of ``x`` ``(n, D)`` against ``N(ref_m, L Lᵀ)``."""
    n = x.shape[0]
    w = torch.linalg.solve_triangular(ref_L, (x - ref_m).T, upper=False).T
    se = torch.full((D, D), 1 / math.sqrt(n), dtype=f64)
    se.diagonal().fill_(math.sqrt(2 / n))
    cov = w.T @ w / n  # the mean is known: no Bessel correction
    z_mean = (w.mean(0).abs() * math.sqrt(n)).max().item()
    return z_mean, ((cov - torch.eye(D, dtype=f64)).abs() / se).max().item()


# Discretisation bound at 100 quadratic steps on max |ΔC_w| (C whitened to I); measured
# 0.069–0.079 for DDPM and 0.035–0.040 for DDIM over the three noises, halving with 2× steps.
DISC_TOL = {"ddpm": 0.1, "ddim": 0.05}


@pytest.mark.parametrize("kind", ["iso", "diag", "gff"])
@pytest.mark.parametrize("rule_name", ["ddpm", "ddim"])
def test_sampling_recovers_mean_and_covariance(kind, rule_name):
    noise = make_noise(kind)
    model = GaussianDenoiser(MU, C, SCHED, noise)
    rule, grid = make_rule(rule_name, noise), quad_grid(100)
    m_T, V_T = start_law(grid, noise)
    # 1. the chain's exact output law is N(μ, C) up to the first-order discretisation error
    m_N, V_N = chain_law(model, rule, grid, m_T, V_T)
    dm, dC = whitened_errors(m_N, V_N, MU.reshape(-1), L_C)
    assert dm < 1e-8 and dC < DISC_TOL[rule_name], (
        f"{kind}/{rule_name}: exact chain law vs data: max |Δμ_w| = {dm:.2e}, "
        f"max |ΔC_w| = {dC:.4f} (allowed {DISC_TOL[rule_name]})"
    )
    # 2. n samples through the driver match that law within sampling error
    g = torch.Generator().manual_seed(2)
    x_T = m_T + torch.randn(N_SAMPLES, D, generator=g, dtype=f64) @ torch.linalg.cholesky(V_T).T
    with torch.no_grad():
        out = sample(
            model, x_T.reshape(-1, *DIMS), grid, rule, noise=g if rule_name == "ddpm" else None
        )
    x0 = out.x0.reshape(N_SAMPLES, D)
    zm, zc = sample_z_scores(x0, m_N, torch.linalg.cholesky(V_N))
    assert zm < Z_MAX and zc < Z_MAX, (
        f"{kind}/{rule_name}: samples vs the chain's law: max z mean {zm:.2f}, cov {zc:.2f}"
    )
    # 3. hence against the data law: sampling error plus the (known) discretisation bias
    zm, zc = sample_z_scores(x0, MU.reshape(-1), L_C)
    tol = Z_MAX + dC * math.sqrt(N_SAMPLES / 2)
    assert zm < Z_MAX and zc < tol, (
        f"{kind}/{rule_name}: samples vs N(μ, C): max z mean {zm:.2f}, cov {zc:.2f} "
        f"(allowed {tol:.2f} = {Z_MAX} + bias {dC:.4f} in s.e. units)"
    )


@pytest.mark.parametrize("rule_name", ["ddpm", "ddim"])
def test_discretisation_error_is_first_order(rule_name):
    noise = GFFNoise(1.0)
    model = GaussianDenoiser(MU, C, SCHED, noise)
    errs = []
    for steps in (50, 100):
        grid = quad_grid(steps)
        law = chain_law(model, make_rule(rule_name, noise), grid, *start_law(grid, noise))
        errs.append(whitened_errors(*law, MU.reshape(-1), L_C)[1])
    ratio = errs[1] / errs[0]
    assert 0.4 < ratio < 0.6, f"{rule_name}: errors {errs} at 50/100 steps, ratio {ratio:.3f}"


def ddim_invert(model, x0, grid, noise):
    """Deterministic DDIM inversion: walk ``grid`` backwards, ``t_prev → t``, with
    ``x_t = √ᾱ_t x̂0 + √(1−ᾱ_t) Σ^{1/2} ε̂`` and ``ε̂ = model(x_{t_prev}, t_prev)``."""
    x = x0
    for t, t_prev in zip(grid.t.flip(0), grid.t_prev.flip(0), strict=True):
        eps = model(x, t_prev)
        x = q_sample(SCHED, noise, predict_x0(SCHED, noise, x, eps, t_prev), t, eps)
    return x


@pytest.mark.parametrize("kind", ["iso", "gff"])  # diagonal Σ: covered by the tests above
def test_ddim_inversion_then_regeneration_reproduces_x0(kind):
    noise = make_noise(kind)
    model = GaussianDenoiser(MU, C, SCHED, noise)
    grid = linspace_grid(SCHED, 1000)
    g = torch.Generator().manual_seed(3)
    x0 = (MU.reshape(-1) + torch.randn(32, D, generator=g, dtype=f64) @ L_C.T).reshape(32, *DIMS)
    with torch.no_grad():
        x_T = ddim_invert(model, x0, grid, noise)
        rec = sample(model, x_T, grid, DDIM(SCHED, noise, eta=0.0)).x0
    err = ((rec - x0).flatten(1).norm(dim=1) / (x0 - MU).flatten(1).norm(dim=1)).max().item()
    # measured ≈ 4e-3 (iso, diag, gff): the O(1/N) mismatch of evaluating ε̂ at t_prev
    # (inversion) vs at t (sampling)
    assert err < 1e-2, f"{kind}: max relative reconstruction error {err:.2e}"
