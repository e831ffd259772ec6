"""CycleDiffusion's DPM-Encoder: native-looking maps (vs EF), posterior chain, exact replay."""

from __future__ import annotations

import pytest
import torch

from nidiff.inversion import Inversion, edit_friendly_invert
from nidiff.inversion.cycle import cycle_edit, cycle_invert
from nidiff.models import EmpiricalDenoiser, GaussianDenoiser
from nidiff.noise import EdgePreservingNoise, GFFNoise, IsotropicNoise, dense_covariance
from nidiff.process import Process
from nidiff.samplers import coefficients_like
from nidiff.schedule import DiscreteSchedule, custom_grid, linspace_grid

SCHED = DiscreteSchedule.linear(1000)
GRID = linspace_grid(SCHED, 50)
DIMS = (1, 8, 8)
COV = 0.5 * dense_covariance(GFFNoise(1.0), DIMS) + 0.1 * torch.eye(64, dtype=torch.float64)
NOISES = pytest.mark.parametrize("noise", [IsotropicNoise(), GFFNoise()], ids=["iso", "gff"])


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _setup(noise, B: int = 16):
    """The exact model of N(0, COV) data and B images drawn from it (float64)."""
    model = GaussianDenoiser(torch.zeros(DIMS), COV, SCHED, noise)
    x0 = torch.randn(B, 64, generator=gen(0), dtype=torch.float64) @ torch.linalg.cholesky(COV).T
    return model, Process(SCHED, noise), x0.reshape(B, *DIMS)


def _map_stats(inv: Inversion) -> tuple[float, float]:
    """Median per-step variance and mean consecutive correlation of the maps (last one left
    out: it is the x0 residual of the deterministic last step)."""
    Z = torch.stack(inv.zs[:-1]).flatten(1)
    var = float(Z.var(dim=1).median())
    Zc = (Z - Z.mean(1, keepdim=True)) / Z.std(1, keepdim=True)
    return var, float((Zc[:-1] * Zc[1:]).mean())


@NOISES
def test_maps_look_native_unlike_edit_friendly(noise):
    model, proc, x0 = _setup(noise)
    var, corr = _map_stats(cycle_invert(model, x0, proc, GRID, generator=gen(1)))
    ef_var, ef_corr = _map_stats(edit_friendly_invert(model, x0, proc, GRID, generator=gen(1)))
    assert 0.9 < var < 1.15 and abs(corr) < 0.05, (var, corr)
    assert ef_var > 3 and ef_corr < -0.3, (ef_var, ef_corr)


def test_states_are_the_forward_posterior_chain():
    model, proc, x0 = _setup(IsotropicNoise(), B=32)
    inv = cycle_invert(model, x0, proc, GRID, generator=gen(2))
    for i in range(0, 49, 6):  # marginals q(x_t | x0): white residuals
        a, b = coefficients_like(SCHED, GRID.t[i], x0)
        r = (inv.xs[i] - a * x0) / b
        assert abs(float(r.mean())) < 0.05 and abs(float(r.var()) - 1) < 0.08
    # consecutive states share their noise: corr(ε_s, ε_t) = γ b_s / b_t (EF's: 0)
    (a, b), (a2, b2) = (coefficients_like(SCHED, GRID.t[i], x0) for i in (20, 21))
    r1, r2 = ((inv.xs[20] - a * x0) / b).flatten(), ((inv.xs[21] - a2 * x0) / b2).flatten()
    want = float(a / a2 * b2 / b)
    assert abs(float(torch.corrcoef(torch.stack([r1, r2]))[0, 1]) - want) < 0.04, want


@NOISES
@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_regeneration_reproduces_x0(noise, eta):
    model, proc, x0 = _setup(noise, B=3)
    inv = cycle_invert(model, x0, proc, GRID, eta=eta, generator=gen(3))
    out = cycle_edit(model, inv, proc)
    assert float((out.x0 - x0).abs().max()) < 1e-12  # exact up to rounding
    assert out.nfe == len(GRID) and out.info["method"] == "cycle"
    skipped = cycle_edit(model, inv, proc, skip=10)
    assert float((skipped.x0 - x0).abs().max()) < 1e-12 and skipped.nfe == len(GRID) - 10


def test_edge_preserving_and_float32():
    ep = EdgePreservingNoise(SCHED)
    data = torch.rand(12, *DIMS, generator=gen(4))
    model, proc = EmpiricalDenoiser(data, SCHED, ep), Process(SCHED, ep)
    x0 = data[:2] + 0.05 * torch.randn(2, *DIMS, generator=gen(5))
    inv = cycle_invert(model, x0, proc, linspace_grid(SCHED, 20), generator=gen(6))
    out = cycle_edit(model, inv, proc)
    assert out.x0.dtype == torch.float32
    assert float((out.x0 - x0).norm() / x0.norm()) < 1e-5


def test_new_condition_edits_and_determinism():
    base, proc, x0 = _setup(IsotropicNoise(), B=2)
    shifted = GaussianDenoiser(torch.full(DIMS, 2.0), COV, SCHED)

    def two_class(x, t, cond):
        outs = torch.stack([base(x, t), shifted(x, t)])
        return outs[cond.long(), torch.arange(x.shape[0])]

    ref = x0.clone()
    src, tgt = torch.zeros(2), torch.ones(2)
    inv = cycle_invert(two_class, x0, proc, GRID, cond=src, generator=gen(7))
    again = cycle_invert(two_class, x0, proc, GRID, cond=src, generator=gen(7))
    assert all(torch.equal(a, b) for a, b in zip(inv.zs, again.zs, strict=True))
    assert torch.equal(x0, ref) and torch.equal(inv.cond, src)
    edit = cycle_edit(two_class, inv, proc, cond=tgt, skip=20)
    moved = float((edit.x0 - x0).mean())
    assert 0.5 < moved < 2.5  # towards the target mean, from a partly kept code
    null = torch.zeros(1)
    guided = cycle_edit(two_class, inv, proc, cond=tgt, guidance=2.0, null_cond=null, skip=20)
    assert float((guided.x0 - x0).mean()) > moved


def test_bad_inputs():
    model, proc, x0 = _setup(IsotropicNoise(), B=1)
    with pytest.raises(ValueError, match="eta"):
        cycle_invert(model, x0, proc, GRID, eta=0.0, generator=gen(0))
    with pytest.raises(ValueError, match="t = 0"):
        cycle_invert(model, x0, proc, GRID[:-1], generator=gen(0))
    with pytest.raises(ValueError, match="generator"):
        cycle_invert(model, x0, proc, GRID)
    with pytest.raises(ValueError, match="null_cond"):
        cycle_invert(model, x0, proc, GRID, guidance=2.0, generator=gen(0))
    with pytest.raises(ValueError, match="x0"):
        cycle_invert(model, x0.int(), proc, GRID, generator=gen(0))
    inv = cycle_invert(model, x0, proc, custom_grid([900.0, 500.0, 100.0]), generator=gen(0))
    with pytest.raises(ValueError, match="skip"):
        cycle_edit(model, inv, proc, skip=3)
    with pytest.raises(ValueError, match="different process"):
        cycle_edit(model, inv, Process(SCHED, GFFNoise()))
