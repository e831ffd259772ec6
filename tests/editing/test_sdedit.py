"""SDEdit: start rule, equivalence with plain sampling from q(x_T | x0), strength vs fidelity."""

from __future__ import annotations

import itertools

import pytest
import torch
from gaussian_fields import smooth_covariance

from nidiff.editing.ngdm import ngdm
from nidiff.editing.sdedit import sdedit, start_index
from nidiff.models import EmpiricalDenoiser, GaussianDenoiser
from nidiff.noise import EdgePreservingNoise, GFFNoise, IsotropicNoise
from nidiff.process import Process
from nidiff.samplers import sample
from nidiff.schedule import DiscreteSchedule, custom_grid, linspace_grid

SCHED = DiscreteSchedule.linear(1000)
GRID = linspace_grid(SCHED, 20)
DIMS = (1, 8, 8)


COV = smooth_covariance(scale=0.5, length2=2.0, nugget=0.05)


def _setup(noise=None, B: int = 4, seed: int = 0):
    proc = Process(SCHED, noise or IsotropicNoise())
    model = GaussianDenoiser(torch.zeros(DIMS), COV, SCHED, proc.noise)
    L = torch.linalg.cholesky(COV).float()
    x0 = (torch.randn(B, 64, generator=torch.Generator().manual_seed(seed)) @ L.T).reshape(B, *DIMS)
    return proc, model, x0


@pytest.mark.parametrize("noise", [IsotropicNoise(), GFFNoise()], ids=["iso", "gff"])
def test_strength_one_is_sampling_from_q_of_x_T(noise):
    proc, model, x0 = _setup(noise)
    got = sdedit(model, x0, proc, GRID, strength=1.0, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    z = torch.randn(x0.shape, generator=g)  # the first draw is the start noise
    want = sample(model, proc.q_sample(x0, GRID.t[0], z), GRID, proc.rule(1.0), noise=g)
    assert torch.equal(got.x0, want.x0)
    assert got.nfe == len(GRID) and got.info["t_start"] == 1000.0
    given = sdedit(
        model, x0, proc, GRID, strength=1.0, z=z, generator=torch.Generator().manual_seed(9)
    )
    g = torch.Generator().manual_seed(9)
    again = sample(model, proc.q_sample(x0, GRID.t[0], z), GRID, proc.rule(1.0), noise=g)
    assert torch.equal(given.x0, again.x0)


def test_strength_one_is_ngdm_with_lambda_one():
    proc, model, x0 = _setup(GFFNoise())
    got = sdedit(model, x0, proc, GRID, strength=1.0, generator=torch.Generator().manual_seed(3))
    lam = torch.ones(1, 1, 8, 8)
    want = ngdm(model, x0, proc, GRID, lam, cond=None, generator=torch.Generator().manual_seed(3))
    assert torch.equal(got.x0, want.x0)


def test_start_rule_first_grid_time_not_above_strength():
    grid = custom_grid([900.0, 600.0, 300.0, 100.0])
    assert start_index(grid, 1.0, 1000.0) == 0
    assert start_index(grid, 0.9, 1000.0) == 0
    assert start_index(grid, 0.7, 1000.0) == 1
    assert start_index(grid, 0.6, 1000.0) == 1  # equality counts
    assert start_index(grid, 0.15, 1000.0) == 3
    with pytest.raises(ValueError, match=r"strength=0\.05"):
        start_index(grid, 0.05, 1000.0)
    proc, model, x0 = _setup()
    res = sdedit(model, x0, proc, grid, strength=0.5, generator=torch.Generator().manual_seed(0))
    assert res.info["t_start"] == 300.0 and res.info["start_index"] == 2 and res.nfe == 2


def test_error_grows_with_strength():
    proc, model, x0 = _setup(B=32, seed=3)
    mse = []
    for s in (0.05, 0.2, 0.5, 1.0):
        out = sdedit(model, x0, proc, GRID, strength=s, generator=torch.Generator().manual_seed(1))
        mse.append(float((out.x0 - x0).square().mean()))
    assert all(a < b for a, b in itertools.pairwise(mse)), mse
    assert mse[0] < 0.05 * mse[-1]  # small strength stays close to the source
    assert abs(mse[-1] - 2 * float(COV.diag().mean())) < 0.3  # strength 1: independent sample


def test_deterministic_and_input_untouched():
    proc, model, x0 = _setup()
    ref = x0.clone()
    a = sdedit(
        model, x0, proc, GRID, strength=0.6, eta=0.5, generator=torch.Generator().manual_seed(2)
    )
    b = sdedit(
        model, x0, proc, GRID, strength=0.6, eta=0.5, generator=torch.Generator().manual_seed(2)
    )
    assert torch.equal(a.x0, b.x0) and torch.equal(x0, ref)
    assert a.info["eta"] == 0.5 and a.info["strength"] == 0.6


def test_guidance_and_edge_preserving_process():
    proc, model, x0 = _setup()
    calls = []

    def cond_model(x, t, cond):
        calls.append(x.shape[0])
        return model(x, t) * (1.0 + cond.reshape(-1, 1, 1, 1))

    out = sdedit(
        cond_model,
        x0,
        proc,
        GRID,
        strength=0.3,
        cond=torch.zeros(4),
        guidance=2.0,
        null_cond=torch.ones(1),
        generator=torch.Generator().manual_seed(0),
    )
    assert out.nfe == len(calls) and set(calls) == {8}  # one batched guided call per step
    ep = Process(SCHED, EdgePreservingNoise(SCHED))
    emp = EmpiricalDenoiser(x0.double(), SCHED, ep.noise)
    res = sdedit(emp, x0, ep, GRID, strength=0.4, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(res.x0).all()
    with pytest.raises(ValueError, match="eta=1"):
        sdedit(emp, x0, ep, GRID, strength=0.4, eta=0.0, generator=torch.Generator())


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"strength": 0.0}, "strength"),
        ({"strength": 1.5}, "strength"),
        ({"strength": 0.5, "guidance": 3.0}, "null_cond"),
        ({"strength": 0.5, "z": torch.zeros(1, 1, 8, 8)}, "z must be"),
        ({"strength": 0.5, "generator": None}, "generator"),
        ({"strength": 0.5, "eta": 2.0}, "eta"),
    ],
)
def test_bad_inputs(kw, match):
    proc, model, x0 = _setup()
    kw = {"generator": torch.Generator().manual_seed(0), **kw}
    with pytest.raises(ValueError, match=match):
        sdedit(model, x0, proc, GRID, **kw)
