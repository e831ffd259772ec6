"""DDIM / DDPM step rules: diffusers equivalence and the identities the module docstring claims."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from nidiff.noise.diagonal import DiagonalNoise
from nidiff.noise.gff import GFFNoise
from nidiff.noise.isotropic import IsotropicNoise
from nidiff.samplers import DDIM, DDPM
from nidiff.schedule import DiscreteSchedule, VPSchedule, leading_grid, trailing_grid

GRIDS = {"leading": leading_grid, "trailing": trailing_grid}
SCHED = DiscreteSchedule.linear(1000)


def _diffusers(betas: str, spacing: str, steps: int, float64_table: bool = True) -> DDIMScheduler:
    kw = {"beta_start": 0.00085, "beta_end": 0.012} if betas == "scaled_linear" else {}
    sch = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule=betas,
        set_alpha_to_one=True,
        steps_offset=0,
        clip_sample=False,
        timestep_spacing=spacing,
        **kw,
    )
    sch.set_timesteps(steps)
    if float64_table:  # let diffusers form its coefficients in float64 too: compare the math
        sch.alphas_cumprod = sch.alphas_cumprod.double()
        sch.final_alpha_cumprod = sch.final_alpha_cumprod.double()
    return sch


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("steps", [50, 100])
@pytest.mark.parametrize("betas", ["linear", "scaled_linear"])
def test_every_step_matches_diffusers_ddim(betas, steps, spacing, eta):
    sch = _diffusers(betas, spacing, steps)
    ours = DiscreteSchedule.from_diffusers(sch)
    grid = GRIDS[spacing](ours, steps)
    assert torch.equal(grid.t, sch.timesteps.double() + 1)
    rule = DDIM(ours, eta=eta)
    g = torch.Generator().manual_seed(steps)
    for tau, (t, t_prev) in zip(sch.timesteps.tolist(), grid, strict=True):
        assert float(t_prev) == max(tau - 1000 // steps + 1, 0)
        x, eps, z = (torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
        ref = sch.step(eps, tau, x, eta=eta, variance_noise=z)
        tr = rule.transition(x, eps, t, t_prev)
        torch.testing.assert_close(tr.sample(z), ref.prev_sample, rtol=0, atol=1e-9)
        torch.testing.assert_close(tr.x0_hat, ref.pred_original_sample, rtol=0, atol=1e-9)
        assert tr.is_deterministic == (eta == 0 or float(t_prev) == 0)


def test_stock_float32_diffusers_agrees_to_float32_rounding():
    sch = _diffusers("scaled_linear", "leading", 50, float64_table=False)
    rule = DDPM(DiscreteSchedule.from_diffusers(sch))
    g = torch.Generator().manual_seed(1)
    grid = leading_grid(rule.schedule, 50)
    for tau, (t, t_prev) in zip(sch.timesteps.tolist(), grid, strict=True):
        x, eps, z = (torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
        ref = sch.step(eps, tau, x, eta=1.0, variance_noise=z).prev_sample
        torch.testing.assert_close(
            rule.transition(x, eps, t, t_prev).sample(z), ref, rtol=0, atol=5e-6
        )


def _posterior(ab_t, ab_s, x_t, x0):
    """Textbook q(x_s | x_t, x0) for s < t (Ho et al. eq. 6-7 generalised to a gap)."""
    g2 = ab_t / ab_s
    mean = ab_s**0.5 * (1 - g2) / (1 - ab_t) * x0 + g2**0.5 * (1 - ab_s) / (1 - ab_t) * x_t
    return mean, ((1 - ab_s) / (1 - ab_t) * (1 - g2)) ** 0.5


NOISES = [IsotropicNoise(), DiagonalNoise(0.5 + _randn(1, 3, 4, 4, seed=9).abs())]


@pytest.mark.parametrize("noise", NOISES, ids=["iso", "diag"])
@pytest.mark.parametrize(("t", "t_prev"), [(500, 499), (500, 123), (37, 0), (1000, 1), (2.5, 1.25)])
def test_eta_one_is_the_ddpm_posterior(noise, t, t_prev):
    x, eps = _randn(2, 3, 4, 4, seed=1), _randn(2, 3, 4, 4, seed=2)
    tr = DDPM(SCHED, noise).transition(x, eps, t, t_prev)
    mean, std = _posterior(float(SCHED.alpha_bar(t)), float(SCHED.alpha_bar(t_prev)), x, tr.x0_hat)
    torch.testing.assert_close(tr.mean, mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(tr.std, torch.tensor(std, dtype=torch.float64), rtol=1e-12, atol=0)
    assert tr.noise is noise


@pytest.mark.parametrize("noise", NOISES, ids=["iso", "diag"])
@pytest.mark.parametrize("t", [1, 2, 400, 1000])
def test_ddpm_single_step_is_the_ancestral_step(noise, t):
    x, eps, z = (_randn(2, 3, 4, 4, seed=s) for s in (3, 4, 5))
    beta = float(SCHED.betas[t - 1])  # β_t of Ho et al., α_t = 1 - β_t
    ab_t, ab_s = float(SCHED.alpha_bar(t)), float(SCHED.alpha_bar(t - 1))
    sigma = ((1 - ab_s) / (1 - ab_t) * beta) ** 0.5
    ref = (x - beta / (1 - ab_t) ** 0.5 * noise.color(eps)) / (1 - beta) ** 0.5
    ref = ref + sigma * noise.color(z)
    out = DDPM(SCHED, noise).transition(x, eps, t, t - 1).sample(z)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_ddpm_is_ddim_with_eta_one():
    x, eps = _randn(3, 5, seed=1), _randn(3, 5, seed=2)
    a = DDPM(SCHED).transition(x, eps, 700, 650)
    b = DDIM(SCHED, eta=1.0).transition(x, eps, 700, 650)
    assert DDPM(SCHED).eta == 1.0 and torch.equal(a.mean, b.mean) and torch.equal(a.std, b.std)
    with pytest.raises(TypeError):
        DDPM(SCHED, eta=0.5)


def test_eta_zero_is_deterministic():
    x, eps = _randn(2, 6, seed=1), _randn(2, 6, seed=2)
    tr = DDIM(SCHED).transition(x, eps, 800, 600)
    assert tr.is_deterministic and float(tr.std) == 0.0
    assert torch.equal(tr.sample(None), tr.mean)
    with pytest.raises(ValueError, match="deterministic"):
        tr.noise_of(tr.mean)


def _noises():
    return [IsotropicNoise(), DiagonalNoise(0.3 + _randn(1, 2, 8, 8, seed=7).abs()), GFFNoise(1.0)]


@pytest.mark.parametrize("noise", _noises(), ids=lambda n: type(n).__name__)
@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_noise_of_inverts_sample(noise, eta):
    x, eps, z = (_randn(2, 2, 8, 8, seed=s) for s in (1, 2, 3))
    tr = DDIM(SCHED, noise, eta).transition(x, eps, 600, 400)
    torch.testing.assert_close(tr.noise_of(tr.sample(z)), z, rtol=0, atol=1e-9)


def test_per_pixel_and_per_sample_times():
    x, eps = _randn(2, 3, 4, 4, seed=1), _randn(2, 3, 4, 4, seed=2)
    rule = DDIM(SCHED, eta=0.7)
    scalar = rule.transition(x, eps, 500.0, 300.0)
    flat = rule.transition(x, eps, torch.full((2, 1, 4, 4), 500.0), 300.0)
    torch.testing.assert_close(flat.mean, scalar.mean, rtol=0, atol=0)
    torch.testing.assert_close(flat.std.expand(2, 1, 4, 4), scalar.std.expand(2, 1, 4, 4))
    t_map = torch.where(
        torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.5, 500.0, 900.0
    )
    mixed = rule.transition(x, eps, t_map, 300.0).mean
    high = rule.transition(x, eps, 900.0, 300.0).mean
    torch.testing.assert_close(mixed, torch.where(t_map == 500.0, scalar.mean, high))
    per_sample = rule.transition(x, eps, torch.tensor([500.0, 900.0]), 300.0).mean
    torch.testing.assert_close(per_sample, torch.cat([scalar.mean[:1], high[1:]]))


@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 4, 4)])
def test_shapes_and_dtypes(shape):
    x, eps = _randn(*shape, seed=1), _randn(*shape, seed=2)
    ref = DDIM(SCHED, eta=0.5).transition(x, eps, 300, 100)
    low = DDIM(SCHED, eta=0.5).transition(x.float(), eps.float(), 300, 100)
    assert ref.mean.dtype == torch.float64 and low.mean.dtype == low.std.dtype == torch.float32
    assert low.mean.shape == low.x0_hat.shape == shape
    torch.testing.assert_close(low.mean.double(), ref.mean, rtol=1e-5, atol=1e-5)


def test_continuous_vp_schedule():
    x, eps = _randn(3, 4, seed=1), _randn(3, 4, seed=2)
    tr = DDPM(VPSchedule()).transition(x, eps, 0.5, 0.25)
    sched = VPSchedule()
    mean, std = _posterior(float(sched.alpha_bar(0.5)), float(sched.alpha_bar(0.25)), x, tr.x0_hat)
    torch.testing.assert_close(tr.mean, mean, rtol=0, atol=1e-12)
    assert abs(float(tr.std) - std) < 1e-12


def test_bad_arguments_raise():
    x, eps = _randn(2, 4, seed=1), _randn(2, 4, seed=2)
    for eta in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="eta"):
            DDIM(SCHED, eta=eta)
    rule = DDIM(SCHED, eta=0.5)
    for t, t_prev in [(300, 300), (300, 400), (1001, 10), (10, -1)]:
        with pytest.raises(ValueError):
            rule.transition(x, eps, t, t_prev)
    with pytest.raises(ValueError, match="t_prev < t"):
        rule.transition(x, eps, torch.tensor([300.0, 200.0]), 250.0)
    with pytest.raises(ValueError, match="shape"):
        rule.transition(x, eps[:, :2], 300, 200)
    with pytest.raises(ValueError, match="non-finite"):
        rule.transition(x, eps.clone().fill_(float("nan")), 300, 200)
    with pytest.raises(ValueError, match="does not fit"):
        rule.transition(x, eps, torch.tensor([300.0, 300.0, 300.0]), 200)


def test_inputs_not_mutated():
    x, eps = _randn(2, 3, 4, 4, seed=1), _randn(2, 3, 4, 4, seed=2)
    t = torch.tensor([500.0, 400.0])
    copies = [v.clone() for v in (x, eps, t)]
    tr = DDPM(SCHED, NOISES[1]).transition(x, eps, t, 100.0)
    tr.noise_of(tr.sample(_randn(2, 3, 4, 4, seed=3)))
    for v, c in zip((x, eps, t), copies, strict=True):
        assert torch.equal(v, c)
    assert tr.eps_hat is eps
