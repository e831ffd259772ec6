"""The shared driver loop: replay, reproducibility, callbacks, and sampling a known Gaussian."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from nidiff.noise.diagonal import DiagonalNoise
from nidiff.samplers import DDIM, DDPM, SampleResult, StepInfo, StepRule, sample
from nidiff.schedule import DiscreteSchedule, leading_grid, trailing_grid

SCHED = DiscreteSchedule.linear(1000)
GRID = trailing_grid(SCHED, 10)


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


class GaussianEps:
    r"""Exact E[ε | x_t] for data x0 ~ N(mu, c²) per element and noise Σ^{1/2} = diag(s)."""

    def __init__(self, schedule, mu=0.5, c=0.3, s=1.0):
        self.schedule, self.mu, self.c, self.s, self.calls = schedule, mu, c, s, []

    def __call__(self, x_t, t, cond=None):
        self.calls.append((x_t.clone(), t))
        a, b = (v.to(x_t.dtype) for v in self.schedule.coefficients(t))
        return b * self.s * (x_t - a * self.mu) / (a**2 * self.c**2 + b**2 * self.s**2)


def test_rules_satisfy_the_protocol():
    assert isinstance(DDIM(SCHED), StepRule) and isinstance(DDPM(SCHED), StepRule)


@pytest.mark.parametrize(
    "rule",
    [DDPM(SCHED), DDIM(SCHED, eta=0.5), DDPM(SCHED, DiagonalNoise(torch.linspace(0.5, 1.5, 6)))],
    ids=["ddpm", "ddim-0.5", "ddpm-diag"],
)
def test_replaying_recorded_noise_is_bitwise(rule):
    x_T = _randn(3, 6, seed=1)
    first = sample(GaussianEps(SCHED), x_T, GRID, rule, noise=torch.Generator().manual_seed(0))
    assert isinstance(first, SampleResult) and len(first.zs) == len(GRID)
    assert all(z is not None for z in first.zs[:-1]) and first.zs[-1] is None  # t_prev = 0 step
    again = sample(GaussianEps(SCHED), x_T, GRID, rule, noise=first.zs)
    assert torch.equal(again.x0, first.x0)
    assert all(a is b or torch.equal(a, b) for a, b in zip(first.zs, again.zs, strict=True))


def test_generator_reproducibility():
    x_T, rule = _randn(2, 5, seed=1), DDPM(SCHED)

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return sample(GaussianEps(SCHED), x_T, GRID, rule, noise=gen)

    assert torch.equal(run(3).x0, run(3).x0)
    assert not torch.equal(run(3).x0, run(4).x0)


def test_deterministic_ddim_needs_no_noise_and_draws_none():
    x_T, model = _randn(2, 5, seed=1), GaussianEps(SCHED)
    res = sample(model, x_T, GRID, DDIM(SCHED))
    assert res.zs == [None] * len(GRID) and res.nfe == len(GRID) == len(model.calls)
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    assert torch.equal(sample(model, x_T, GRID, DDIM(SCHED), noise=gen).x0, res.x0)
    assert torch.equal(gen.get_state(), state)


def test_model_sees_the_grid_times_and_the_chain():
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        model = GaussianEps(SCHED)
        res = sample(model, _randn(2, 3, seed=1, dtype=dtype), GRID, DDIM(SCHED))
        assert res.x0.dtype == dtype
        for (x_in, t), t_grid in zip(model.calls, GRID.t, strict=True):
            assert t.ndim == 0 and t.dtype == torch.promote_types(dtype, torch.float32)
            assert float(t) == float(t_grid) and x_in.dtype == dtype


def test_callback_sees_each_step_and_can_replace_x_prev():
    x_T, model, seen = _randn(2, 4, seed=1), GaussianEps(SCHED), []

    def callback(info: StepInfo):
        seen.append(info)
        return torch.zeros_like(info.x_prev) if info.i == 2 else None

    res = sample(
        model, x_T, GRID, DDPM(SCHED), noise=torch.Generator().manual_seed(0), callback=callback
    )
    assert [s.i for s in seen] == list(range(len(GRID)))
    assert torch.equal(torch.stack([s.t for s in seen]), GRID.t)
    assert torch.equal(torch.stack([s.t_prev for s in seen]), GRID.t_prev)
    assert torch.equal(model.calls[3][0], torch.zeros(2, 4, dtype=torch.float64))
    assert torch.equal(seen[3].x_t, torch.zeros(2, 4, dtype=torch.float64))
    assert torch.equal(seen[-1].x_prev, res.x0)
    assert all(s.z is z for s, z in zip(seen, res.zs, strict=True))
    torch.testing.assert_close(seen[1].x_prev, seen[1].transition.sample(seen[1].z), rtol=0, atol=0)
    with pytest.raises(ValueError, match="callback"):
        sample(model, x_T, GRID, DDIM(SCHED), callback=lambda info: info.x_prev[:1])


def test_bad_noise_sources_raise():
    x_T, model = _randn(2, 4, seed=1), GaussianEps(SCHED)
    with pytest.raises(ValueError, match="noise=None"):
        sample(model, x_T, GRID, DDPM(SCHED))
    with pytest.raises(ValueError, match="10 steps"):
        sample(model, x_T, GRID, DDPM(SCHED), noise=[torch.zeros(2, 4)] * 9)
    with pytest.raises(ValueError, match="None"):
        sample(model, x_T, GRID, DDPM(SCHED), noise=[None] * 10)
    with pytest.raises(ValueError, match="shape"):
        sample(model, x_T, GRID, DDPM(SCHED), noise=[torch.zeros(2, 3)] * 10)
    with pytest.raises(TypeError):
        sample(model, x_T, GRID, DDPM(SCHED), noise=torch.zeros(10, 2, 4))


def test_non_finite_model_output_raises_after_the_loop_naming_the_first_step():
    """The finiteness checks are decided once, after the last step (no device read per step)."""
    model = GaussianEps(SCHED)

    def breaks_at_step_3(x_t, t, cond=None):
        out = model(x_t, t, cond)
        return out.fill_(float("nan")) if len(model.calls) == 4 else out

    with pytest.raises(ValueError, match=r"^eps contains non-finite .* at step 3$"):
        sample(breaks_at_step_3, _randn(2, 4, seed=1), GRID, DDIM(SCHED))
    assert len(model.calls) == len(GRID)  # the loop ran to the end before raising
    with pytest.raises(ValueError, match=r"^x_t contains non-finite .* at step 0$"):
        sample(model, torch.full((2, 4), float("inf")), GRID, DDIM(SCHED))


def test_x_T_is_not_mutated():
    x_T = _randn(2, 4, seed=1)
    copy = x_T.clone()
    sample(GaussianEps(SCHED), x_T, GRID, DDPM(SCHED), noise=torch.Generator().manual_seed(0))
    assert torch.equal(x_T, copy)


def test_full_chain_matches_a_diffusers_loop():
    sch = DDIMScheduler(
        num_train_timesteps=1000, set_alpha_to_one=True, steps_offset=0, clip_sample=False
    )
    sch.set_timesteps(25)
    sch.alphas_cumprod = sch.alphas_cumprod.double()
    sched = DiscreteSchedule.from_diffusers(sch)
    model, x_T = GaussianEps(sched), _randn(2, 3, 4, 4, seed=1)
    res = sample(
        model,
        x_T,
        leading_grid(sched, 25),
        DDIM(sched, eta=0.8),
        noise=torch.Generator().manual_seed(0),
    )
    x = x_T
    for tau, z in zip(sch.timesteps.tolist(), res.zs, strict=True):
        eps = model(x, torch.tensor(tau + 1.0, dtype=torch.float64))
        x = sch.step(eps, tau, x, eta=0.8, variance_noise=z).prev_sample
    torch.testing.assert_close(res.x0, x, rtol=0, atol=1e-9)


def _gaussian_chain(grid, eta, c, s):
    """Closed form of the chain on Gaussian data, written independently of the library: each
    step maps x_t - a·mu to m·(x_t - a·mu) + noise of variance var·s², with
    m = (a'·a·c² + sqrt(1 - ab' - var)·b·s²) / (a²c² + b²s²). Returns (prod m, added variance)."""
    gain, added = torch.ones_like(s), torch.zeros_like(s)
    for t, t_prev in grid:
        ab, ab_p = SCHED.alpha_bar(t), SCHED.alpha_bar(t_prev)
        var = eta**2 * (1 - ab_p) / (1 - ab) * (1 - ab / ab_p)
        m = ((ab_p * ab).sqrt() * c**2 + ((1 - ab_p - var) * (1 - ab)).sqrt() * s**2) / (
            ab * c**2 + (1 - ab) * s**2
        )
        gain, added = m * gain, m**2 * added + var * s**2
    return gain, added


S = torch.linspace(0.5, 2.0, 8, dtype=torch.float64)
MU, C = 0.5, 0.3


def test_ddim_on_gaussian_data_is_the_closed_form_linear_map():
    grid = leading_grid(SCHED, 100)
    x_T = DiagonalNoise(S).color(_randn(16, 8, seed=1))
    res = sample(GaussianEps(SCHED, MU, C, S), x_T, grid, DDIM(SCHED, DiagonalNoise(S)))
    gain, _ = _gaussian_chain(grid, 0.0, C, S)
    ref = MU + gain * (x_T - SCHED.alpha_bar(grid.t[0]).sqrt() * MU)
    torch.testing.assert_close(res.x0, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_stochastic_chain_on_gaussian_data_has_the_closed_form_moments(eta):
    grid = leading_grid(SCHED, 100)
    x_T = DiagonalNoise(S).color(_randn(4000, 8, seed=1))
    res = sample(
        GaussianEps(SCHED, MU, C, S),
        x_T,
        grid,
        DDIM(SCHED, DiagonalNoise(S), eta),
        noise=torch.Generator().manual_seed(2),
    )
    gain, added = _gaussian_chain(grid, eta, C, S)
    std = (gain**2 * x_T.var(0) + added).sqrt()
    assert (res.x0.mean(0) - MU).abs().max() < 0.02
    assert (res.x0.std(0) / std - 1).abs().max() < 0.05
    assert (std / C - 1).abs().max() < 0.2  # 100 steps shrink the spread a little (discretisation)
