"""Identities of IsotropicNoise and DiagonalNoise, and the shared NoiseModel.sample contract."""

from __future__ import annotations

import pytest
import torch

from nidiff.noise import DiagonalNoise, IsotropicNoise, dense_covariance, white_noise

SHAPE = (3, 2, 5, 4)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _positive_std(shape=(1, 1, 5, 4), seed: int = 1) -> torch.Tensor:
    return 0.2 + torch.rand(shape, generator=_gen(seed), dtype=torch.float64)


def _models():
    return [IsotropicNoise(), DiagonalNoise(_positive_std()), DiagonalNoise(_positive_std(SHAPE))]


@pytest.mark.parametrize("noise", _models(), ids=["iso", "diag-shared", "diag-full"])
def test_whiten_inverts_color_and_apply_is_color_twice(noise):
    z = white_noise(SHAPE, generator=_gen(), dtype=torch.float64)
    torch.testing.assert_close(noise.whiten(noise.color(z)), z, rtol=0, atol=1e-12)
    torch.testing.assert_close(noise.color(noise.whiten(z)), z, rtol=0, atol=1e-12)
    torch.testing.assert_close(noise.apply(z), noise.color(noise.color(z)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("noise", _models(), ids=["iso", "diag-shared", "diag-full"])
def test_sample_from_z_is_color_and_generator_is_reproducible(noise):
    z = white_noise(SHAPE, generator=_gen(3), dtype=torch.float64)
    torch.testing.assert_close(noise.sample(z=z), noise.color(z), rtol=0, atol=0)
    torch.testing.assert_close(noise.sample(SHAPE, z=z), noise.color(z), rtol=0, atol=0)
    a = noise.sample(SHAPE, generator=_gen(7), dtype=torch.float64)
    b = noise.sample(SHAPE, generator=_gen(7), dtype=torch.float64)
    c = noise.sample(SHAPE, generator=_gen(8), dtype=torch.float64)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    torch.testing.assert_close(
        a, noise.color(white_noise(SHAPE, generator=_gen(7), dtype=torch.float64))
    )


def test_sample_argument_errors():
    with pytest.raises(ValueError, match="shape or z"):
        IsotropicNoise().sample()
    with pytest.raises(ValueError, match="disagrees"):
        IsotropicNoise().sample((2, 3), z=torch.zeros(3, 2))


def test_diagonal_shared_map_broadcasts_over_batch_and_channels():
    std = _positive_std((1, 1, 5, 4))
    z = white_noise(SHAPE, generator=_gen(), dtype=torch.float64)
    expected = std.expand(SHAPE) * z
    torch.testing.assert_close(DiagonalNoise(std).color(z), expected, rtol=0, atol=0)
    torch.testing.assert_close(DiagonalNoise(std.expand(SHAPE)).color(z), expected)


def test_diagonal_works_in_input_dtype():
    noise = DiagonalNoise(_positive_std())
    for dtype in (torch.float32, torch.float64):
        z = torch.randn(SHAPE, generator=_gen(), dtype=dtype)
        for op in (noise.color, noise.whiten, noise.apply):
            assert op(z).dtype == dtype


def test_diagonal_zero_std_is_a_pseudo_inverse():
    std = _positive_std()
    std[..., 0, :] = 0.0
    noise = DiagonalNoise(std)
    z = white_noise(SHAPE, generator=_gen(), dtype=torch.float64)
    w = noise.whiten(z)
    assert torch.isfinite(w).all()
    assert torch.equal(w[..., 0, :], torch.zeros_like(w[..., 0, :]))
    rec = noise.whiten(noise.color(z))
    torch.testing.assert_close(rec[..., 1:, :], z[..., 1:, :], rtol=0, atol=1e-12)
    # Moore-Penrose identities: S S+ S = S and S+ S S+ = S+.
    torch.testing.assert_close(noise.color(rec), noise.color(z), rtol=0, atol=1e-12)
    torch.testing.assert_close(noise.whiten(noise.color(w)), w, rtol=0, atol=1e-12)


def test_diagonal_bad_broadcast_raises():
    noise = DiagonalNoise(_positive_std((1, 1, 5, 4)))
    with pytest.raises(ValueError, match="does not broadcast"):
        noise.color(torch.zeros(2, 1, 4, 5))
    with pytest.raises(ValueError, match="does not broadcast"):
        noise.whiten(torch.zeros(2, 1, 6, 4))
    with pytest.raises(ValueError, match="does not broadcast"):
        noise.apply(torch.zeros(2, 1, 6, 4))


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_diagonal_rejects_bad_std(bad):
    std = torch.ones(1, 1, 3, 3)
    std[0, 0, 1, 1] = bad
    with pytest.raises(ValueError, match="std"):
        DiagonalNoise(std)


@pytest.mark.parametrize("noise", _models(), ids=["iso", "diag-shared", "diag-full"])
def test_inputs_are_not_mutated(noise):
    x = white_noise(SHAPE, generator=_gen(), dtype=torch.float64)
    keep = x.clone()
    for op in (noise.color, noise.whiten, noise.apply):
        op(x)
        assert torch.equal(x, keep)
    noise.sample(z=x)
    assert torch.equal(x, keep)


def test_diagonal_does_not_mutate_std():
    std = _positive_std()
    keep = std.clone()
    noise = DiagonalNoise(std)
    noise.whiten(torch.ones(SHAPE, dtype=torch.float64))
    assert torch.equal(std, keep)


def test_dense_covariance_of_diagonal_is_diag_std_squared():
    std = _positive_std((1, 3, 2))
    std[0, 1, 0] = 0.0
    cov = dense_covariance(DiagonalNoise(std), (1, 3, 2))
    torch.testing.assert_close(cov, torch.diag(std.flatten().square()), rtol=0, atol=1e-15)


def test_dense_covariance_of_isotropic_is_identity():
    cov = dense_covariance(IsotropicNoise(), (2, 3, 2))
    torch.testing.assert_close(cov, torch.eye(12, dtype=torch.float64), rtol=0, atol=0)


def test_reprs():
    assert repr(IsotropicNoise()) == "IsotropicNoise()"
    assert "(1, 1, 5, 4)" in repr(DiagonalNoise(_positive_std()))
