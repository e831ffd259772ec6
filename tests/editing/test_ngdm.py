"""NGDM Algorithm 1: reference loop, λ ≡ 0 / λ ≡ 1 limits, rounding, GFF and EP processes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from gaussian_fields import smooth_covariance

from nidiff.editing import EditResult, ngdm, rounded_start, weighting_map
from nidiff.models import EmpiricalDenoiser, GaussianDenoiser
from nidiff.noise import EdgePreservingNoise, GFFNoise
from nidiff.process import Process
from nidiff.samplers import sample
from nidiff.schedule import DiscreteSchedule, custom_grid, leading_grid

SCHED = DiscreteSchedule.linear(1000)
PROC = Process(SCHED)
GRID = leading_grid(SCHED, 10)  # 901, 801, ..., 1 → 0
H = W = 8
COV = smooth_covariance(H, scale=0.2, nugget=0.02)
INSIDE = (slice(2, 6), slice(2, 6))


class TwoClass:
    """Label 0 → N(0, C), label 1 → N(1.5, C), label 2 → N(0.75, C) (the "null" class)."""

    def __init__(self, noise=None):
        self.dens = [GaussianDenoiser(torch.full((1, H, W), m), COV, SCHED, noise) for m in
                     (0.0, 1.5, 0.75)]  # fmt: skip

    def __call__(self, x_t, t, cond=None):
        outs = torch.stack([d(x_t, t) for d in self.dens])
        idx = cond.long().reshape(1, -1, 1, 1, 1).expand(1, *x_t.shape)
        return outs.gather(0, idx)[0]


def _x0(B: int = 2, seed: int = 0) -> torch.Tensor:
    return 0.3 * torch.randn(B, 1, H, W, generator=torch.Generator().manual_seed(seed))


def _square(B: int = 1, outside: float = 0.0) -> torch.Tensor:
    lam = torch.full((B, 1, H, W), outside)
    lam[(slice(None), 0, *INSIDE)] = 1.0
    return lam


def _edit(lam, x0=None, seed=0, process=PROC, model=None, **kw) -> EditResult:
    x0 = _x0() if x0 is None else x0
    model = TwoClass() if model is None else model
    cond = torch.ones(x0.shape[0], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    return ngdm(model, x0, process, kw.pop("grid", GRID), lam, cond=cond, generator=gen, **kw)


def _algorithm1(model, x0, process, grid, lam, cond, eta, gen):
    """NGDM Algorithm 1 written out: replace, then step; the last replacement at t_prev = 0."""
    rule = process.rule(eta)
    T_k = process.schedule.rectified_time(grid.t[0], lam.double())
    z = torch.randn(x0.shape, generator=gen)
    y = process.q_sample(x0, grid.t[0], z)
    for t, t_prev in grid:
        y = torch.where(t >= T_k, process.q_sample(x0, t, z), y)  # lines 5–7
        tr = rule.transition(y, model(y, t.float(), cond), t, t_prev)  # line 8
        y = tr.sample(None if tr.is_deterministic else torch.randn(x0.shape, generator=gen))
    return torch.where(grid.t_prev[-1] >= T_k, process.q_sample(x0, grid.t_prev[-1], z), y)


@pytest.mark.parametrize("eta", [1.0, 0.0, 0.5])
def test_matches_algorithm_1_written_out(eta):
    lam = torch.rand(2, 1, H, W, generator=torch.Generator().manual_seed(5))
    lam[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.002])
    x0, model, cond = _x0(), TwoClass(), torch.ones(2, dtype=torch.long)
    ref = _algorithm1(
        model, x0, Process(SCHED), GRID, lam, cond, eta, torch.Generator().manual_seed(1)
    )
    res = _edit(lam, x0, seed=1, eta=eta)
    assert torch.equal(res.x0, ref)
    assert res.nfe == len(GRID) and res.lam.shape == res.start_times.shape == (2, 1, H, W)
    assert res.info["method"] == "ngdm" and res.info["eta"] == eta


@pytest.mark.parametrize("preserve", [False, True])
def test_lam_zero_returns_the_source_exactly(preserve):
    x0 = _x0()
    res = _edit(torch.zeros(1, 1, H, W), x0, preserve=preserve)
    # λ = 0 ⇒ T_k = 0: the pixel follows the clean path and the last replacement (t = 0) is x0
    assert torch.equal(res.x0, x0)
    assert torch.equal(res.start_times, torch.zeros(2, 1, H, W, dtype=torch.float64))


def test_preserve_keeps_pixels_starting_below_the_last_model_time():
    grid = custom_grid([600, 300, 150])  # last model time 150
    lam = torch.full((1, 1, H, W), 0.02)  # T_k ≈ 62 < 150: one step from 150 by default
    x0 = _x0()
    assert float(SCHED.rectified_time(600, 0.02)) < 150
    plain = _edit(lam, x0, grid=grid)
    kept = _edit(lam, x0, grid=grid, preserve=True)
    assert not torch.equal(plain.x0, x0) and torch.equal(kept.x0, x0)
    early = custom_grid([600, 300, 150, 50])[:-1]  # stops at t = 50: λ = 0 pixels end at x(50)
    zero = torch.zeros(1, 1, H, W)
    assert not torch.equal(_edit(zero, x0, grid=early).x0, x0)
    assert torch.equal(_edit(zero, x0, grid=early, preserve=True).x0, x0)


@pytest.mark.parametrize("eta", [1.0, 0.0])
def test_lam_one_is_sdedit_from_the_first_grid_time(eta):
    x0, model, cond = _x0(), TwoClass(), torch.ones(2, dtype=torch.long)
    gen = torch.Generator().manual_seed(7)
    z = torch.randn(x0.shape, generator=gen)
    x_T = Process(SCHED).q_sample(x0, GRID.t[0], z)  # SDEdit: noise the source to t_0 ...
    ref = sample(model, x_T, GRID, Process(SCHED).rule(eta), cond=cond, noise=gen).x0  # ... denoise
    res = _edit(torch.ones(1, 1, H, W), x0, seed=7, eta=eta)
    assert torch.equal(res.x0, ref)
    assert torch.equal(res.start_times, torch.full((2, 1, H, W), 901.0, dtype=torch.float64))


def test_start_times_and_rounding_are_monotone_in_lam():
    lam = torch.linspace(0, 1, 201, dtype=torch.float64)
    T_k = SCHED.start_times(lam, 901.0)
    start = rounded_start(T_k, GRID)
    assert bool((T_k[1:] >= T_k[:-1]).all()) and bool((start[1:] >= start[:-1]).all())
    times = GRID.times
    assert bool(torch.isin(start, times).all()) and bool((start >= T_k).all())
    # the smallest visited time >= T_k: the next visited time below it is < T_k
    idx = torch.searchsorted(-times, -start)
    below = torch.where(idx + 1 < len(times), times[(idx + 1).clamp(max=len(times) - 1)], -1.0)
    assert bool((below < T_k).all())
    assert float(start[0]) == 0.0 and float(start[-1]) == 901.0
    assert float(rounded_start(torch.tensor(301.0), GRID)) == 301.0  # on a grid time: starts there
    assert float(rounded_start(torch.tensor(300.5), GRID)) == 301.0


def test_only_high_lam_pixels_change():
    x0 = _x0(4)
    res = _edit(_square(), x0)
    change = (res.x0 - x0)[:, 0]
    inside = torch.zeros(H, W, dtype=torch.bool)
    inside[INSIDE] = True
    assert torch.equal(change[:, ~inside], torch.zeros_like(change[:, ~inside]))
    assert float(change[:, inside].mean()) > 0.5  # moved towards the target mean 1.5
    assert torch.equal(_edit(_square().bool(), x0).x0, res.x0)  # a boolean mask is a λ map
    soft = _edit(_square(outside=0.05), x0).x0 - x0  # T_k ≈ 180: lightly regenerated
    assert 0 < float(soft[:, 0][:, ~inside].abs().mean()) < 0.5 * float(change[:, inside].mean())


def test_seeded_determinism_and_documented_noise_order():
    lam = _square(outside=0.2)
    a, b = _edit(lam, seed=3), _edit(lam, seed=3)
    assert torch.equal(a.x0, b.x0) and not torch.equal(a.x0, _edit(lam, seed=4).x0)
    gen = torch.Generator().manual_seed(3)  # z first, then one map per stochastic step
    z = torch.randn(2, 1, H, W, generator=gen)
    steps = [torch.randn(2, 1, H, W, generator=gen) for _ in range(len(GRID) - 1)] + [None]
    x0 = _x0()
    replay = ngdm(TwoClass(), x0, Process(SCHED), GRID, lam, cond=torch.ones(2), z=z,
                  step_noise=steps)  # fmt: skip
    assert torch.equal(replay.x0, a.x0)


def test_guidance_and_inputs_untouched():
    x0, lam = _x0(), _square()
    x0_before, lam_before = x0.clone(), lam.clone()
    res = _edit(lam, x0, guidance=3.0, null_cond=torch.tensor([2]))
    assert torch.equal(x0, x0_before) and torch.equal(lam, lam_before)
    assert res.nfe == len(GRID) and not torch.equal(res.x0, _edit(lam, x0).x0)


def test_gff_process():
    gff = GFFNoise(1.0)
    proc, model = Process(SCHED, gff), TwoClass(gff)
    x0 = _x0()
    assert torch.equal(_edit(torch.zeros(1, 1, H, W), x0, process=proc, model=model,
                             preserve=True).x0, x0)  # fmt: skip
    res = _edit(_square(), x0, process=proc, model=model)
    assert bool(torch.isfinite(res.x0).all()) and not torch.equal(res.x0, x0)


def test_edge_preserving_process():
    ep = EdgePreservingNoise(SCHED)
    data = torch.rand(6, 1, H, W, generator=torch.Generator().manual_seed(2)) * 2 - 1
    model = EmpiricalDenoiser(data, SCHED, ep)
    proc, x0 = Process(SCHED, ep), _x0()  # not in the data: the edit must move it
    assert torch.equal(_edit(torch.zeros(1, 1, H, W), x0, process=proc, model=model).x0, x0)
    res = _edit(_square(outside=0.1), x0, process=proc, model=model)
    assert bool(torch.isfinite(res.x0).all()) and not torch.equal(res.x0, x0)
    with pytest.raises(ValueError, match="eta"):
        _edit(_square(), x0, process=proc, model=model, eta=0.0)


@pytest.mark.parametrize(
    ("lam", "kw", "word"),
    [
        (torch.full((1, 1, H, W), 1.5), {}, "lam"),
        (torch.full((1, 1, H, W), -0.1), {}, "lam"),
        (torch.full((1, 1, H, W), math.nan), {}, "lam"),
        (torch.ones(1, H, W), {}, "lam of shape"),
        (torch.ones(1, 1, H, W + 1), {}, "lam of shape"),
        (torch.ones(3, 1, H, W), {}, "lam of shape"),
        (torch.ones(1, 1, H, W), {"guidance": 2.0}, "null_cond"),
        (torch.ones(1, 1, H, W), {"eta": 1.5}, "eta"),
        (torch.ones(1, 1, H, W), {"preserve": 1}, "preserve"),
        (torch.ones(1, 1, H, W), {"z": torch.zeros(2, 1, H)}, "z must"),
    ],
)
def test_bad_input_raises(lam, kw, word):
    with pytest.raises(ValueError, match=word):
        _edit(lam, **kw)


def test_bad_source_and_missing_noise_raise():
    bad = _x0()
    bad[0, 0, 0, 0] = math.inf
    with pytest.raises(ValueError, match="non-finite"):
        _edit(_square(), bad)
    with pytest.raises(ValueError, match="generator"):
        ngdm(TwoClass(), _x0(), Process(SCHED), GRID, _square(), cond=torch.ones(2))


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST not installed")
@torch.no_grad()
def test_bundled_sneaker_to_sandal_end_to_end():
    from nidiff.bundled import load_bundled
    from nidiff.data.fashion_mnist import load_fashion_mnist_tensors
    from nidiff.data.transforms import from_uint8

    torch.set_num_threads(1)
    m = load_bundled()
    images, labels = load_fashion_mnist_tensors(FASHION, split="test")
    sneaker, sandal = m.class_names.index("Sneaker"), m.class_names.index("Sandal")
    x0 = from_uint8(images[labels == sneaker][:1]).reshape(1, 1, 28, 28)
    gen = torch.Generator().manual_seed(0)
    wm = weighting_map(m.denoiser, x0, m.process, source_cond=torch.tensor([sneaker]),
                       target_cond=torch.tensor([sandal]), n=2, generator=gen)  # fmt: skip
    assert wm.A.shape == (1, 1, 28, 28) and float(wm.A.max()) == 1.0
    res = ngdm(m.denoiser, x0, m.process, leading_grid(m.schedule, 5), wm.lam,
               cond=torch.tensor([sandal]), generator=gen, clip_x0=(-1.0, 1.0))  # fmt: skip
    assert res.x0.shape == x0.shape and bool(torch.isfinite(res.x0).all())
    change, lam = (res.x0 - x0).abs().flatten(), wm.lam.flatten()
    low, high = lam <= lam.quantile(0.25), lam >= lam.quantile(0.75)
    assert float(change[high].mean()) > 0.05 and float(change[high].mean()) > 2 * float(
        change[low].mean()
    )  # the regenerated pixels are where the map is high


@pytest.mark.parametrize("sampler", ["dpm++2m", "dpm++2m-sde"])
def test_ngdm_on_a_multistep_solver_starts_each_pixel_with_its_own_history(sampler):
    """A pixel's multistep history begins with its own chain (it is forgotten while the pixel is
    on the source path): a constant λ whose start rounds to ``grid.t[j]`` is SDEdit from
    ``grid.t[j]`` exactly, first-order first step included; λ ≡ 1 is plain sampling from the
    noised source."""
    from nidiff.schedule import linspace_grid

    sched = DiscreteSchedule.linear(200)
    proc = Process(sched)
    g = torch.Generator().manual_seed(0)
    cov = smooth_covariance(4, scale=0.5, length2=2.0, nugget=0.05)
    model = GaussianDenoiser(torch.zeros(1, 4, 4, dtype=torch.float64), cov, sched)
    rule = proc.sampler(sampler)
    grid = linspace_grid(sched, 12)
    x0 = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64)
    z = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    steps = [torch.randn(x0.shape, generator=g, dtype=torch.float64) for _ in range(len(grid))]
    lam = torch.full((1, 1, 4, 4), 0.5, dtype=torch.float64)
    with torch.no_grad():
        res = ngdm(model, x0, proc, grid, lam, cond=None, rule=rule, z=z, step_noise=steps)
        j = int((grid.t >= res.start_times.max()).sum()) - 1  # the rounded start's index
        assert 0 < j < len(grid) - 1
        ref = sample(model, proc.q_sample(x0, grid.t[j], z), grid[j:], rule, noise=steps[j:])
        torch.testing.assert_close(res.x0, ref.x0, rtol=1e-12, atol=1e-12)
        # the history matters: SDEdit from grid.t[j - 1] with it is a different image
        other = sample(model, proc.q_sample(x0, grid.t[j - 1], z), grid[j - 1 :], rule,
                       noise=steps[j - 1 :])  # fmt: skip
        assert (other.x0 - ref.x0).abs().max() > 1e-4
        full = ngdm(model, x0, proc, grid, torch.ones_like(lam), cond=None, rule=rule, z=z,
                    step_noise=steps)  # fmt: skip
        want = sample(model, proc.q_sample(x0, grid.t[0], z), grid, rule, noise=steps).x0
    torch.testing.assert_close(full.x0, want, rtol=0, atol=0)
