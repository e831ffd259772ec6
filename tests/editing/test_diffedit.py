"""DiffEdit: the mask finds where the conditions disagree; outside it the source comes back."""

from __future__ import annotations

import pytest
import torch

from nidiff.editing.diffedit import diffedit, diffedit_mask
from nidiff.inversion.ddim import ddim_edit, ddim_invert
from nidiff.models import GaussianDenoiser
from nidiff.noise import EdgePreservingNoise, GFFNoise, IsotropicNoise
from nidiff.process import Process
from nidiff.schedule import DiscreteSchedule, linspace_grid

SCHED = DiscreteSchedule.linear(1000)
GRID = linspace_grid(SCHED, 20)
SQUARE = (slice(2, 6), slice(3, 7))
SRC, TGT = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)


class TwoClass:
    """Label 0 → N(0, 0.25 I), label 1 → the same with mean 2 inside ``SQUARE``; pixels are
    independent, so with isotropic noise the predictions differ only inside the square."""

    def __init__(self, noise=None):
        mu1 = torch.zeros(1, 8, 8, dtype=torch.float64)
        mu1[0][SQUARE] = 2.0
        cov = 0.25 * torch.eye(64, dtype=torch.float64)
        self.dens = [GaussianDenoiser(m, cov, SCHED, noise) for m in (torch.zeros_like(mu1), mu1)]

    def __call__(self, x_t, t, cond):
        outs = torch.stack([d(x_t, t) for d in self.dens])
        return outs[cond.long(), torch.arange(x_t.shape[0])]


def _square() -> torch.Tensor:
    m = torch.zeros(1, 1, 8, 8)
    m[0, 0][SQUARE] = 1.0
    return m


def _x0(B: int = 2, seed: int = 0) -> torch.Tensor:
    return 0.5 * torch.randn(B, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / ((a + b) > 0).sum())


@pytest.mark.parametrize("noise", [IsotropicNoise(), GFFNoise()], ids=["iso", "gff"])
def test_mask_recovers_the_square(noise):
    proc = Process(SCHED, noise)
    mask = diffedit_mask(
        TwoClass(noise),
        _x0(),
        proc,
        source_cond=SRC,
        target_cond=TGT,
        generator=torch.Generator().manual_seed(1),
    )
    assert mask.shape == (2, 1, 8, 8) and set(mask.unique().tolist()) <= {0.0, 1.0}
    square = _square()[0]
    for b in range(2):
        assert float((mask[b] * (1 - square)).sum()) == 0  # nothing outside the square
        # the map compares coloured noise Σ^{1/2}ε̂; comparing the white GFF predictions (a
        # high-pass image of it) found the square's border instead (IoU 0.75)
        assert _iou(mask[b], square) > 0.8


def test_edit_keeps_the_source_outside_and_edits_inside():
    proc, model, x0 = Process(SCHED), TwoClass(), _x0()
    res = diffedit(
        model,
        x0,
        proc,
        GRID,
        source_cond=SRC,
        target_cond=TGT,
        strength=0.8,
        generator=torch.Generator().manual_seed(1),
    )
    M = res.lam
    assert _iou(M[0], _square()[0]) > 0.8
    assert torch.equal(torch.where(M > 0, 0.0, res.x0), torch.where(M > 0, 0.0, x0))
    inside = res.x0[:, 0, SQUARE[0], SQUARE[1]]
    assert float(inside.mean()) > 1.0 > float(x0[:, 0, SQUARE[0], SQUARE[1]].mean()) + 0.5
    k = res.info["steps"]
    assert res.nfe == 1 + 2 * k  # one batched mask call, inversion, decoding
    assert torch.equal(res.start_times, M.double() * res.info["t_start"])


def test_full_and_empty_masks():
    proc, model, x0 = Process(SCHED), TwoClass(), _x0()
    kw = {"source_cond": SRC, "target_cond": TGT, "strength": 0.5}
    empty = diffedit(model, x0, proc, GRID, mask=torch.zeros(1, 1, 8, 8), **kw)
    assert torch.equal(empty.x0, x0) and empty.nfe == 2 * empty.info["steps"]
    full = diffedit(model, x0, proc, GRID, mask=torch.ones(2, 1, 8, 8), **kw)
    inv = ddim_invert(model, x0, proc, GRID, cond=SRC)
    k = len(GRID) - full.info["steps"]
    assert torch.equal(full.x0, ddim_edit(model, inv, proc, cond=TGT, skip=k).x0)


def test_deterministic_and_input_untouched():
    proc, model, x0 = Process(SCHED, GFFNoise()), TwoClass(GFFNoise()), _x0()
    ref = x0.clone()
    a, b = (
        diffedit(
            model,
            x0,
            proc,
            GRID,
            source_cond=SRC,
            target_cond=TGT,
            generator=torch.Generator().manual_seed(7),
        ).x0
        for _ in range(2)
    )
    assert torch.equal(a, b) and torch.equal(x0, ref)


def test_bad_inputs():
    proc, model, x0 = Process(SCHED), TwoClass(), _x0()
    kw = {"source_cond": SRC, "target_cond": TGT}
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="threshold"):
        diffedit_mask(model, x0, proc, threshold=1.5, generator=g, **kw)
    with pytest.raises(ValueError, match="clamp"):
        diffedit_mask(model, x0, proc, clamp=0.0, generator=g, **kw)
    with pytest.raises(ValueError, match="strength"):
        diffedit(model, x0, proc, GRID, mask=_square(), strength=0.0, **kw)
    with pytest.raises(ValueError, match="mask"):
        diffedit(model, x0, proc, GRID, mask=torch.ones(1, 8, 8), **kw)
    with pytest.raises(ValueError, match="mask"):
        diffedit(model, x0, proc, GRID, mask=torch.ones(1, 1, 4, 4), **kw)
    with pytest.raises(ValueError, match="broadcast"):
        diffedit(model, x0, proc, GRID, mask=torch.ones(2, 3, 8, 8), **kw)
    with pytest.raises(ValueError, match="mask"):
        diffedit(model, x0, proc, GRID, mask=2 * _square(), **kw)
    with pytest.raises(ValueError, match="null_cond"):
        diffedit(model, x0, proc, GRID, mask=_square(), guidance=3.0, **kw)
    ep = Process(SCHED, EdgePreservingNoise(SCHED))
    with pytest.raises(ValueError, match="edge-preserving"):
        diffedit(model, x0, ep, GRID, mask=_square(), **kw)
