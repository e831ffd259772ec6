"""ILVR: the output inherits the reference's low frequencies; guards and determinism."""

from __future__ import annotations

import pytest
import torch
from gaussian_fields import smooth_covariance

from nidiff.editing.ilvr import ilvr, lowpass
from nidiff.models import GaussianDenoiser
from nidiff.noise import GFFNoise, IsotropicNoise
from nidiff.process import Process
from nidiff.samplers import sample
from nidiff.schedule import DiscreteSchedule, linspace_grid

SCHED = DiscreteSchedule.linear(1000)
GRID = linspace_grid(SCHED, 25)
DIMS = (1, 8, 8)


COV = smooth_covariance(scale=0.5, length2=4.0, nugget=0.05)


def _setup(noise=None, B: int = 8, seed: int = 0):
    proc = Process(SCHED, noise or IsotropicNoise())
    model = GaussianDenoiser(torch.zeros(DIMS), COV, SCHED, proc.noise)
    L = torch.linalg.cholesky(COV).float()
    x0 = (torch.randn(B, 64, generator=torch.Generator().manual_seed(seed)) @ L.T).reshape(B, *DIMS)
    return proc, model, x0


def _low_err(x, ref, factor=4):
    return float((lowpass(x, factor) - lowpass(ref, factor)).square().mean())


@pytest.mark.parametrize("noise", [IsotropicNoise(), GFFNoise()], ids=["iso", "gff"])
def test_output_follows_reference_low_frequencies(noise):
    proc, model, x0 = _setup(noise)
    out = ilvr(model, x0, proc, GRID, factor=4, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    free = sample(
        model, proc.prior(torch.randn(x0.shape, generator=g)), GRID, proc.rule(1.0), noise=g
    ).x0
    guided, unguided = _low_err(out.x0, x0), _low_err(free, x0)
    assert guided < 0.05 * unguided, (guided, unguided)
    assert guided < 0.02 * float(lowpass(x0, 4).square().mean())
    # the high frequencies are the model's, not a copy of the reference
    assert float((out.x0 - x0).square().mean()) > 10 * guided
    assert out.nfe == len(GRID) and out.info["factor"] == 4


def test_t_stop_limits_the_conditioning():
    proc, model, x0 = _setup()
    errs = [
        _low_err(
            ilvr(model, x0, proc, GRID, t_stop=s, generator=torch.Generator().manual_seed(3)).x0, x0
        )
        for s in (0.0, 500.0, 1000.0)
    ]
    assert errs[0] < errs[1] < errs[2], errs


def test_deterministic_and_input_untouched():
    proc, model, x0 = _setup(B=2)
    ref = x0.clone()
    a = ilvr(model, x0, proc, GRID, factor=2, eta=0.3, generator=torch.Generator().manual_seed(4))
    b = ilvr(model, x0, proc, GRID, factor=2, eta=0.3, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.x0, b.x0) and torch.equal(x0, ref)


def test_lowpass_keeps_constants_and_factor_one_is_identity():
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(lowpass(torch.full_like(x, 0.7), 4), torch.full_like(x, 0.7))
    assert torch.allclose(lowpass(x, 1), x)
    assert lowpass(x, 4).shape == x.shape


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"factor": 3}, "divide"),
        ({"factor": 0}, "factor"),
        ({"factor": 2.5}, "factor"),
        ({"t_stop": -1.0}, "t_stop"),
        ({"generator": None}, "generator"),
        ({"guidance": 2.0}, "null_cond"),
    ],
)
def test_bad_inputs(kw, match):
    proc, model, x0 = _setup(B=1)
    kw = {"generator": torch.Generator().manual_seed(0), **kw}
    with pytest.raises(ValueError, match=match):
        ilvr(model, x0, proc, GRID, **kw)
    with pytest.raises(ValueError, match="image"):
        ilvr(model, x0.reshape(1, 64), proc, GRID, generator=torch.Generator())
