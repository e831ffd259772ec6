"""Analytic checks of the continuous-time and higher-order samplers with Gaussian data.

For data :math:`x_0 \\sim \\mathcal N(\\mu, C)` the exact denoiser is affine in :math:`x_t`, so
every deterministic sampler is an affine map of its start state and every one-step stochastic
rule an affine map plus Gaussian noise: the law of a sampler's output is Gaussian and computable
exactly with the library's own step code (:func:`affine_law`, :func:`chain_law`). That gives:

* rectified flow's closed-form velocity (checked against an independent formula);
* the flow model and its VP re-parameterisation giving the same samples;
* every solver reaching the analytic marginal with an error that shrinks at its order.
"""

from __future__ import annotations

import math

import pytest
import torch
from gaussian_fields import smooth_covariance

from nidiff.models import GaussianDenoiser
from nidiff.models.prediction import FlowVelocity
from nidiff.noise import GFFNoise, IsotropicNoise
from nidiff.noise.base import dense_covariance
from nidiff.process import Process
from nidiff.samplers import sample
from nidiff.schedule import AlphaBarSchedule, RectifiedFlow, VPSchedule, custom_grid

f64 = torch.float64
DIMS = (1, 4, 4)
D = math.prod(DIMS)
MU = torch.linspace(-0.5, 0.8, D, dtype=f64).reshape(DIMS)
C = smooth_covariance(4, scale=0.6, length2=1.5, nugget=0.05)


def basis() -> torch.Tensor:
    """``0`` and the ``D`` unit vectors, as a batch of images."""
    return torch.cat([torch.zeros(1, D, dtype=f64), torch.eye(D, dtype=f64)]).reshape(D + 1, *DIMS)


def affine_law(model, rule, grid, m, V):
    """Push ``N(m, V)`` through a deterministic sampler (any rule, multistep included): the whole
    chain is affine, ``x_out = P x_T + q``, read off at ``0`` and the unit vectors."""
    with torch.no_grad():
        Y = sample(model, basis(), grid, rule).x0.reshape(D + 1, D)
    P = (Y[1:] - Y[0]).T
    return P @ m + Y[0], P @ V @ P.T


def chain_law(model, rule, grid, m, V, noise):
    """Push ``N(m, V)`` through a one-step stochastic rule: ``x' = P x + q + s Σ^{1/2} z``."""
    X, Sigma = basis(), dense_covariance(noise, DIMS)
    for t, t_prev in grid:
        tr = rule.transition(X, model(X, t), t, t_prev)
        Y = tr.mean.reshape(D + 1, D)
        P = (Y[1:] - Y[0]).T
        m, V = P @ m + Y[0], P @ V @ P.T + float(tr.std) ** 2 * Sigma
    return m, V


def marginal(schedule, noise, t):
    """The exact law of :math:`x_t = \\alpha_t x_0 + \\sigma_t\\Sigma^{1/2}\\varepsilon`."""
    a, s = (float(v) for v in schedule.coefficients(t))
    return a * MU.reshape(-1), a * a * C + s * s * dense_covariance(noise, DIMS)


def law_error(m, V, ref_m, ref_V) -> float:
    """Max entry of the mean and covariance errors after whitening by the reference law."""
    L = torch.linalg.cholesky(ref_V)
    mw = torch.linalg.solve_triangular(L, (m - ref_m)[:, None], upper=False)
    Vw = torch.linalg.solve_triangular(L, V, upper=False)
    Vw = torch.linalg.solve_triangular(L, Vw.T, upper=False)
    return max(mw.abs().max().item(), (Vw - torch.eye(D, dtype=f64)).abs().max().item())


# ------------------------------------------------------------------ rectified flow, in closed form
def flow_velocity_oracle(noise):
    """The exact velocity E[ε_Σ − x0 | x_t] of rectified flow, from the exact ε-denoiser through
    the library's one conversion (FlowVelocity.compose)."""
    proc = Process(RectifiedFlow(), noise, FlowVelocity())
    eps = GaussianDenoiser(MU, C, proc.schedule, noise)

    def u(x, t, cond=None):
        c = proc.coefficients(t, x)
        e = eps(x, t)
        eps_sigma = noise.color(e)
        x0 = (x - c.sigma * eps_sigma) / c.alpha
        return proc.prediction.compose(x0, eps_sigma, c, noise)

    return proc, u


def test_rectified_flow_velocity_has_its_closed_form():
    """u(x, t) = E[ε − x0 | x_t] for x_t = (1−t)x0 + tε, written out independently:
    with K = (1−t)²C + t²I, E[x0|x_t] = μ + (1−t) C K⁻¹ (x_t − (1−t)μ) and
    E[ε|x_t] = t K⁻¹ (x_t − (1−t)μ)."""
    _, u = flow_velocity_oracle(IsotropicNoise())
    x = torch.randn(5, *DIMS, generator=torch.Generator().manual_seed(0), dtype=f64)
    for t in (0.1, 0.5, 0.9):
        K = (1 - t) ** 2 * C + t * t * torch.eye(D, dtype=f64)
        r = torch.linalg.solve(K, (x.reshape(5, D) - (1 - t) * MU.reshape(-1)).T).T
        x0 = MU.reshape(-1) + (1 - t) * r @ C.T
        want = (t * r - x0).reshape(x.shape)
        torch.testing.assert_close(u(x, torch.tensor(t, dtype=f64)), want, rtol=1e-9, atol=1e-10)


class FlowAsVP(AlphaBarSchedule):
    r"""The VP schedule with rectified flow's SNR at every time: :math:`\bar\alpha_t =
    (1-t)^2/((1-t)^2 + t^2)` (``t_max`` just below 1, where the SNR is still positive)."""

    t_max = 0.999

    def _log_alpha_bar(self, t):
        return 2 * torch.log1p(-t) - torch.log((1 - t) ** 2 + t * t)

    def _time_of_log_alpha_bar(self, log_ab):
        # (1-t)/t = sqrt(ᾱ/(1-ᾱ))
        r = torch.exp(0.5 * (log_ab - torch.log(-torch.expm1(log_ab))))
        return 1 / (1 + r)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_the_flow_model_and_its_vp_reparameterisation_give_the_same_samples(eta):
    """x_flow(t) = r_t · x_vp(t), r_t = sqrt((1−t)² + t²): DDIM/DDPM steps depend only on the SNR,
    so the same start noise and step noise give the same images (NGDM's VP-equivalence)."""
    noise = IsotropicNoise()
    flow, u = flow_velocity_oracle(noise)
    vp = Process(FlowAsVP(), noise)
    eps_vp = GaussianDenoiser(MU, C, vp.schedule, noise)
    grid = custom_grid(torch.linspace(0.999, 0.02, 25, dtype=f64))
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, *DIMS, generator=g, dtype=f64)
    zs = [torch.randn(64, *DIMS, generator=g, dtype=f64) for _ in range(len(grid))]
    r_T = math.sqrt(0.001**2 + 0.999**2)
    x_T = flow.q_sample(torch.zeros_like(z), grid.t[0], z)  # pure noise part at t_0
    with torch.no_grad():
        a = sample(u, x_T, grid, flow.rule(eta), noise=zs if eta else None).x0
        b = sample(eps_vp, x_T / r_T, grid, vp.rule(eta), noise=zs if eta else None).x0
    torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


# ------------------------------------------------------------------ convergence orders
VP = VPSchedule()
T_END = 0.05  # compare with the exact marginal at t = 0.05 (no final denoising step)


def _errors(name: str, noise, steps: tuple[int, ...]) -> list[float]:
    proc = Process(VP, noise)
    model = GaussianDenoiser(MU, C, VP, noise)
    rule = proc.sampler(name)
    errs = []
    for n in steps:
        grid = _stop_at(custom_grid(torch.linspace(1.0, T_END, n + 1, dtype=f64)))
        m0, V0 = marginal(VP, noise, grid.t[0])
        if rule.stochastic:
            m, V = chain_law(model, rule, grid, m0, V0, noise)
        else:
            m, V = affine_law(model, rule, grid, m0, V0)
        errs.append(law_error(m, V, *marginal(VP, noise, T_END)))
    return errs


def _stop_at(grid):
    """The grid through the same times, its last step landing on T_END instead of 0."""
    from nidiff.schedule import TimeGrid

    times = grid.times[:-1]  # drop the appended 0: the last time is T_END
    return TimeGrid(times[:-1].clone(), times[1:].clone())


# (sampler, order): the ratio of errors at N and 2N steps approaches 2**order.
ORDERS = [
    ("sde-euler", 1),  # Euler–Maruyama on the reverse SDE (NGDM eq. 3; GFF eq. 24 with Σ)
    ("flow-euler", 1),  # Euler on the probability-flow ODE in t
    ("flow-heun", 2),  # Heun on the probability-flow ODE in t
    ("heun", 2),  # Heun on the EDM ODE
    ("dpm++2m", 2),  # DPM-Solver++(2M)
    ("ddim", 1),
]


@pytest.mark.parametrize("noise", [IsotropicNoise(), GFFNoise(1.0)], ids=repr)
@pytest.mark.parametrize(("name", "order"), ORDERS)
def test_solvers_converge_to_the_marginal_at_their_order(name, order, noise):
    steps = (40, 80, 160)
    errs = _errors(name, noise, steps)
    ratios = [errs[i] / errs[i + 1] for i in range(len(errs) - 1)]
    shown = ", ".join(f"{e:.2e}" for e in errs)
    print(f"{name} ({noise!r}): errors at {steps} steps {shown}; ratios {ratios} vs {2**order}")
    assert errs[-1] < errs[0]
    assert 0.7 * 2**order < ratios[-1] < 1.4 * 2**order


def test_ngdm_with_the_reverse_sde_is_eq_10():
    """NGDM's rectified reverse SDE (eq. 10), Euler–Maruyama: every pixel runs the isotropic
    reverse SDE from its own start time. λ ≡ 1 is plain reverse-SDE sampling from the noised
    source; λ = 0 pixels stay on the source's path and end as the source."""
    from nidiff.editing import ngdm

    noise = IsotropicNoise()
    proc = Process(VP, noise)
    model = GaussianDenoiser(MU, C, VP, noise)
    rule = proc.sampler("sde-euler")
    grid = custom_grid(torch.linspace(1.0, 0.01, 30, dtype=f64))
    g = torch.Generator().manual_seed(0)
    x0 = (MU + 0.3 * torch.randn(2, *DIMS, generator=g, dtype=f64)).to(f64)
    z = torch.randn(x0.shape, generator=g, dtype=f64)
    steps = [torch.randn(x0.shape, generator=g, dtype=f64) for _ in range(len(grid))]
    with torch.no_grad():
        full = ngdm(
            model,
            x0,
            proc,
            grid,
            torch.ones(1, 1, 4, 4),
            cond=None,
            rule=rule,
            z=z,
            step_noise=steps,
        )
        ref = sample(model, proc.q_sample(x0, grid.t[0], z), grid, rule, noise=steps).x0
        torch.testing.assert_close(full.x0, ref, rtol=0, atol=0)
        lam = torch.ones(1, 1, 4, 4, dtype=f64)
        lam[..., :2] = 0.0
        part = ngdm(model, x0, proc, grid, lam, cond=None, rule=rule, z=z, step_noise=steps)
    assert torch.equal(part.x0[..., :2], x0[..., :2])
    assert part.info["sampler"] == {"sampler": "sde-euler", "denoise_final": True}
