"""NGDM + edit-friendly maps: the λ ≡ 1 / λ ≡ 0 / constant-λ limits and the trajectory replay."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from gaussian_fields import smooth_covariance

from nidiff.editing.ngdm import rounded_start
from nidiff.editing.ngdm_ef import ngdm_edit_friendly
from nidiff.inversion import edit_friendly_invert, edit_friendly_regenerate
from nidiff.models import GaussianDenoiser
from nidiff.noise import GFFNoise
from nidiff.process import Process
from nidiff.schedule import DiscreteSchedule, leading_grid

SCHED = DiscreteSchedule.linear(1000)
GRID = leading_grid(SCHED, 8)
H = W = 8
COV = smooth_covariance(H, scale=0.2, nugget=0.02)
SRC, TGT = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)


class TwoClass:
    """Label 0 → N(0, C), label 1 → N(1.5, C), label 2 → N(0.75, C)."""

    def __init__(self, noise=None):
        means = (0.0, 1.5, 0.75)
        self.dens = [GaussianDenoiser(torch.full((1, H, W), m), COV, SCHED, noise) for m in means]

    def __call__(self, x_t, t, cond=None):
        outs = torch.stack([d(x_t, t) for d in self.dens])
        return outs.gather(0, cond.long().reshape(1, -1, 1, 1, 1).expand(1, *x_t.shape))[0]


def _setup(noise=None):
    proc, model = Process(SCHED, noise) if noise else Process(SCHED), TwoClass(noise)
    x0 = 0.3 * torch.randn(2, 1, H, W, generator=torch.Generator().manual_seed(0))
    inv = edit_friendly_invert(
        model, x0, proc, GRID, cond=SRC, generator=torch.Generator().manual_seed(1)
    )
    return model, proc, x0, inv


@pytest.mark.parametrize("noise", [None, GFFNoise(1.0)], ids=["iso", "gff"])
def test_lam_one_is_ef_regeneration_and_lam_zero_is_the_source(noise):
    model, proc, x0, inv = _setup(noise)
    ef = edit_friendly_regenerate(model, inv, proc, cond=TGT)
    res = ngdm_edit_friendly(model, inv, proc, torch.ones(1, 1, H, W), cond=TGT)
    assert torch.equal(res.x0, ef.x0) and res.nfe == len(GRID)
    zero = ngdm_edit_friendly(model, inv, proc, torch.zeros(1, 1, H, W), cond=TGT)
    assert torch.equal(zero.x0, x0)
    # the source chain itself reconstructs x0 to float precision (what λ = 0 pixels follow)
    rec = edit_friendly_regenerate(model, inv, proc).x0
    assert float((rec - x0).norm() / x0.norm()) < 1e-5


def test_constant_lam_is_ef_with_the_matching_skip():
    model, proc, x0, inv = _setup()
    lam = 0.25
    start = float(rounded_start(SCHED.rectified_time(GRID.t[0], lam), GRID))
    skip = int((GRID.t == start).nonzero())
    assert 0 < skip < len(GRID) - 1
    ef = edit_friendly_regenerate(model, inv, proc, cond=TGT, skip=skip)
    res = ngdm_edit_friendly(model, inv, proc, torch.full((1, 1, H, W), lam), cond=TGT)
    torch.testing.assert_close(res.x0, ef.x0, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(res.x0, x0, atol=1e-2)


def test_square_map_edits_inside_only_and_replay_without_trajectory_matches():
    model, proc, x0, inv = _setup()
    lam = torch.zeros(1, 1, H, W)
    lam[..., 2:6, 2:6] = 1.0
    res = ngdm_edit_friendly(model, inv, proc, lam, cond=TGT)
    inside = lam[0, 0].bool()
    change = (res.x0 - x0)[:, 0]
    assert torch.equal(change[:, ~inside], torch.zeros_like(change[:, ~inside]))
    assert float(change[:, inside].mean()) > 0.5
    bare = ngdm_edit_friendly(model, replace(inv, xs=None), proc, lam, cond=TGT)
    assert bare.nfe == 2 * len(GRID) and bare.info["source_replayed"]
    torch.testing.assert_close(bare.x0, res.x0, rtol=0, atol=1e-6)


def test_preserve_and_guards():
    model, proc, x0, inv = _setup()
    lam = torch.full((1, 1, H, W), 1e-5)  # T_k ≈ 0.78 < grid.t[-1] = 1: kept only with preserve
    assert not torch.equal(ngdm_edit_friendly(model, inv, proc, lam, cond=TGT).x0, x0)
    assert torch.equal(ngdm_edit_friendly(model, inv, proc, lam, cond=TGT, preserve=True).x0, x0)
    with pytest.raises(ValueError, match="lam"):
        ngdm_edit_friendly(model, inv, proc, torch.full((1, 1, H, W), 2.0), cond=TGT)
    with pytest.raises(ValueError, match="lam of shape"):
        ngdm_edit_friendly(model, inv, proc, torch.ones(H, W), cond=TGT)
    with pytest.raises(ValueError, match="null_cond"):
        ngdm_edit_friendly(model, inv, proc, torch.ones(1, 1, H, W), cond=TGT, guidance=2.0)
    with pytest.raises(ValueError, match="different process"):
        ngdm_edit_friendly(model, inv, Process(SCHED, GFFNoise()), torch.ones(1, 1, H, W), cond=TGT)
