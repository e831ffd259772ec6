"""Transition: sampling x_prev = mean + std·Σ^{1/2}z and extracting z back."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nidiff.noise.diagonal import DiagonalNoise
from nidiff.noise.gff import GFFNoise
from nidiff.noise.isotropic import IsotropicNoise
from nidiff.samplers import Transition


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _noises():
    return [IsotropicNoise(), DiagonalNoise(0.2 + _randn(1, 1, 6, 6, seed=5).abs()), GFFNoise(1.0)]


def _transition(noise, std):
    mean = _randn(2, 3, 6, 6, seed=1)
    return Transition(mean=mean, std=std, noise=noise, x0_hat=mean * 2, eps_hat=mean * 3)


@pytest.mark.parametrize("noise", _noises(), ids=lambda n: type(n).__name__)
@pytest.mark.parametrize(
    "std",
    [torch.tensor(0.4, dtype=torch.float64), 0.1 + _randn(2, 1, 6, 6, seed=4).abs()],
    ids=["scalar", "map"],
)
def test_sample_and_noise_of_are_inverse(noise, std):
    tr = _transition(noise, std)
    z = _randn(2, 3, 6, 6, seed=2)
    x_prev = tr.sample(z)
    torch.testing.assert_close(x_prev, tr.mean + std * noise.color(z), rtol=0, atol=0)
    torch.testing.assert_close(tr.noise_of(x_prev), z, rtol=0, atol=1e-10)
    x_other = _randn(2, 3, 6, 6, seed=3)
    torch.testing.assert_close(tr.sample(tr.noise_of(x_other)), x_other, rtol=0, atol=1e-10)
    assert not tr.is_deterministic


def test_deterministic_step():
    tr = _transition(IsotropicNoise(), torch.tensor(0.0))
    assert tr.is_deterministic
    assert torch.equal(tr.sample(None), tr.mean)
    with pytest.raises(ValueError, match="deterministic"):
        tr.noise_of(tr.mean)


def test_stochastic_step_needs_noise_of_the_right_shape():
    tr = _transition(IsotropicNoise(), torch.tensor(0.5))
    with pytest.raises(ValueError, match="stochastic"):
        tr.sample(None)
    with pytest.raises(ValueError, match="shape"):
        tr.sample(_randn(2, 3, 6, 5))


def test_partly_zero_std_map_is_stochastic():
    std = torch.zeros(2, 1, 6, 6, dtype=torch.float64)
    std[0] = 0.5
    assert not _transition(IsotropicNoise(), std).is_deterministic


def test_frozen_and_not_mutating():
    tr = _transition(IsotropicNoise(), torch.tensor(0.5))
    mean = tr.mean.clone()
    z = _randn(2, 3, 6, 6, seed=2)
    zc = z.clone()
    tr.noise_of(tr.sample(z))
    assert torch.equal(tr.mean, mean) and torch.equal(z, zc)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tr.std = torch.tensor(1.0)
