"""Forward marginal q_sample and its inverse predict_x0."""

from __future__ import annotations

import pytest
import torch

from nidiff.noise.diagonal import DiagonalNoise
from nidiff.noise.isotropic import IsotropicNoise
from nidiff.samplers import DDIM, coefficients_like, predict_x0, q_sample
from nidiff.schedule import DiscreteSchedule

SCHED = DiscreteSchedule.linear(1000)


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_q_sample_is_the_marginal_formula():
    x0, z = _randn(2, 3, 4, 4, seed=1), _randn(2, 3, 4, 4, seed=2)
    noise = DiagonalNoise(0.5 + _randn(1, 3, 4, 4, seed=3).abs())
    ab = float(SCHED.alpha_bar(250))
    ref = ab**0.5 * x0 + (1 - ab) ** 0.5 * noise.color(z)
    torch.testing.assert_close(q_sample(SCHED, noise, x0, 250, z), ref, rtol=0, atol=1e-14)
    assert torch.equal(q_sample(SCHED, noise, x0, 0, z), x0)


@pytest.mark.parametrize("noise", [IsotropicNoise(), DiagonalNoise(torch.full((1, 4), 0.7))])
@pytest.mark.parametrize("t", [1.0, 999.0, torch.tensor([10.0, 500.0, 1000.0])])
def test_predict_x0_inverts_q_sample(noise, t):
    x0, z = _randn(3, 4, seed=1), _randn(3, 4, seed=2)
    x_t = q_sample(SCHED, noise, x0, t, z)
    torch.testing.assert_close(predict_x0(SCHED, noise, x_t, z, t), x0, rtol=0, atol=1e-9)


def test_ddim_x0_hat_is_predict_x0():
    x, eps = _randn(2, 5, seed=1), _randn(2, 5, seed=2)
    noise = DiagonalNoise(torch.full((1, 5), 1.3))
    tr = DDIM(SCHED, noise, 0.2).transition(x, eps, 400, 100)
    torch.testing.assert_close(tr.x0_hat, predict_x0(SCHED, noise, x, eps, 400), rtol=0, atol=0)


def test_dtype_shape_and_errors():
    x0 = _randn(2, 1, 3, 3, seed=1, dtype=torch.float32)
    a, b = coefficients_like(SCHED, torch.tensor([1.0, 2.0]), x0)
    assert a.shape == (2, 1, 1, 1) and a.dtype == b.dtype == torch.float32
    assert q_sample(SCHED, IsotropicNoise(), x0, 7, torch.zeros_like(x0)).dtype == torch.float32
    with pytest.raises(ValueError, match="shape"):
        q_sample(SCHED, IsotropicNoise(), x0, 7, torch.zeros(2, 1, 3, 2))
    with pytest.raises(ValueError):
        q_sample(SCHED, IsotropicNoise(), x0, 1001, torch.zeros_like(x0))
    with pytest.raises(ValueError, match="non-finite"):
        predict_x0(SCHED, IsotropicNoise(), x0, torch.full_like(x0, float("inf")), 5)
