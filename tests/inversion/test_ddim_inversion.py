"""DDIM inversion: reconstruction error shrinks with the step count; skip; guards."""

from __future__ import annotations

import pytest
import torch
from gaussian_fields import smooth_covariance

from nidiff.inversion.ddim import DDIMInversion, ddim_edit, ddim_invert
from nidiff.models import GaussianDenoiser
from nidiff.noise import EdgePreservingNoise, GFFNoise, IsotropicNoise
from nidiff.process import Process
from nidiff.samplers import sample
from nidiff.schedule import DiscreteSchedule, linspace_grid

SCHED = DiscreteSchedule.linear(1000)
DIMS = (1, 8, 8)


COV = smooth_covariance(scale=0.5, length2=2.0, nugget=0.05)


def _setup(noise=None, B: int = 4, seed: int = 0):
    proc = Process(SCHED, noise or IsotropicNoise())
    model = GaussianDenoiser(torch.zeros(DIMS), COV, SCHED, proc.noise)
    L = torch.linalg.cholesky(COV)
    g = torch.Generator().manual_seed(seed)
    x0 = (torch.randn(B, 64, generator=g, dtype=torch.float64) @ L.T).reshape(B, *DIMS)
    return proc, model, x0


def _rel_err(proc, model, x0, steps):
    grid = linspace_grid(SCHED, steps)
    inv = ddim_invert(model, x0, proc, grid)
    out = ddim_edit(model, inv, proc)
    return float((out.x0 - x0).norm() / x0.norm())


@pytest.mark.parametrize("noise", [IsotropicNoise(), GFFNoise()], ids=["iso", "gff"])
def test_reconstruction_improves_with_steps(noise):
    proc, model, x0 = _setup(noise)
    errs = [_rel_err(proc, model, x0, n) for n in (10, 50, 250)]
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < 0.015, errs  # many steps: close reconstruction
    assert errs[1] > 3 * errs[2]  # first order in the step size


def test_result_layout_and_regeneration():
    proc, model, x0 = _setup()
    grid = linspace_grid(SCHED, 20)
    inv = ddim_invert(model, x0, proc, grid, cond=None)
    assert isinstance(inv, DDIMInversion) and inv.nfe == 20
    assert len(inv.trajectory) == 21 and inv.trajectory[-1] is x0
    assert inv.trajectory[0] is inv.x_T
    # x_T is roughly prior-distributed: about unit variance, not x0
    assert 0.6 < float(inv.x_T.var()) < 1.5
    out = ddim_edit(model, inv, proc, skip=5)
    want = sample(model, inv.trajectory[5], grid[5:], proc.rule(0.0))
    assert torch.equal(out.x0, want.x0) and out.nfe == 15
    assert out.info["skip"] == 5 and out.info["t_start"] == float(grid.t[5])


def test_deterministic_and_input_untouched():
    proc, model, x0 = _setup(GFFNoise(), B=2)
    ref = x0.clone()
    grid = linspace_grid(SCHED, 15)
    a, b = ddim_invert(model, x0, proc, grid), ddim_invert(model, x0, proc, grid)
    assert torch.equal(a.x_T, b.x_T) and torch.equal(x0, ref)


def test_guidance_is_recorded_and_needs_null_cond():
    proc, model, x0 = _setup(B=2)
    grid = linspace_grid(SCHED, 10)

    def cond_model(x, t, cond):
        return model(x, t) * (1.0 + 0.1 * cond.reshape(-1, 1, 1, 1))

    c, null = torch.zeros(2), torch.ones(1)
    inv = ddim_invert(cond_model, x0, proc, grid, cond=c, guidance=2.0, null_cond=null)
    assert inv.guidance == 2.0 and inv.cond is c
    with pytest.raises(ValueError, match="null_cond"):
        ddim_invert(cond_model, x0, proc, grid, cond=c, guidance=2.0)
    with pytest.raises(ValueError, match="null_cond"):
        ddim_edit(cond_model, inv, proc, cond=c, guidance=0.5)


def test_bad_inputs():
    proc, model, x0 = _setup(B=1)
    grid = linspace_grid(SCHED, 10)
    inv = ddim_invert(model, x0, proc, grid)
    for skip in (-1, 10, 1.5):
        with pytest.raises(ValueError, match="skip"):
            ddim_edit(model, inv, proc, skip=skip)
    with pytest.raises(ValueError, match="x0"):
        ddim_invert(model, x0.long(), proc, grid)
    ep = Process(SCHED, EdgePreservingNoise(SCHED))
    with pytest.raises(ValueError, match="edge-preserving"):
        ddim_invert(model, x0, ep, grid)
    with pytest.raises(ValueError, match="edge-preserving"):
        ddim_edit(model, inv, ep)
