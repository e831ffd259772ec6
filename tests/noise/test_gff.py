"""GFFNoise: unit variance, |k|^{-2p} spectrum, exact whitening, symmetric Σ^{1/2}, errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from nidiff.noise import GFFNoise, NoiseModel, dense_covariance, white_noise


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _radius(H: int, W: int) -> torch.Tensor:
    kx = torch.fft.fftfreq(H, dtype=torch.float64)
    ky = torch.fft.fftfreq(W, dtype=torch.float64)
    return torch.sqrt(kx[:, None] ** 2 + ky[None, :] ** 2)


def _dense_sqrt(noise: GFFNoise, H: int, W: int) -> torch.Tensor:
    """The (HW, HW) matrix of color: column j is color(e_j)."""
    D = H * W
    eye = torch.eye(D, dtype=torch.float64).reshape(D, H, W)
    return noise.color(eye).reshape(D, D).T


# --- statistics of samples -------------------------------------------------------------------


@pytest.mark.parametrize("power", [0.5, 1.0, 2.0])
def test_samples_have_zero_mean_and_unit_per_pixel_variance(power):
    N = 4000
    x = GFFNoise(power).sample((N, 16, 16), generator=_gen(), dtype=torch.float64)
    se_mean, se_var = 1 / math.sqrt(N), math.sqrt(2 / N)
    assert x.mean(0).abs().max() < 5 * se_mean
    assert (x.square().mean(0) - 1).abs().max() < 5 * se_var


@pytest.mark.parametrize("shape", [(8, 8), (7, 5), (6, 10), (2, 9)])
@pytest.mark.parametrize("power", [0.0, 1.0, 3.0])
def test_per_pixel_variance_is_exactly_one(shape, power):
    cov = dense_covariance(GFFNoise(power), shape)
    torch.testing.assert_close(cov.diagonal(), torch.ones(cov.shape[0], dtype=cov.dtype))


@pytest.mark.parametrize("power", [0.5, 1.0])
def test_radial_power_spectrum_slope_is_minus_two_p(power):
    N, H = 256, 64
    x = GFFNoise(power).sample((N, H, H), generator=_gen(1), dtype=torch.float64)
    P = torch.fft.fft2(x).abs().square().mean(0)
    k = _radius(H, H)
    edges = torch.logspace(math.log10(0.04), math.log10(0.4), 13, dtype=torch.float64)
    log_k, log_P = [], []
    for lo, hi in itertools.pairwise(edges):
        m = (k >= lo) & (k < hi)
        log_k.append(k[m].log().mean())
        log_P.append(P[m].mean().log())
    log_k, log_P = torch.stack(log_k), torch.stack(log_P)
    slope = ((log_k - log_k.mean()) * (log_P - log_P.mean())).sum() / (
        (log_k - log_k.mean()).square().sum()
    )
    assert abs(float(slope) + 2 * power) < 0.1


def test_empirical_covariance_matches_dense_covariance():
    N, shape = 20000, (1, 8, 8)
    noise = GFFNoise(1.0)
    x = noise.sample((N, *shape), generator=_gen(2), dtype=torch.float64).reshape(N, -1)
    emp = x.T @ x / N
    cov = dense_covariance(noise, shape)
    fro, tr = cov.norm(), cov.trace()
    # E||emp - cov||_F^2 = (||cov||_F^2 + tr(cov)^2) / N for zero-mean Gaussian samples.
    expected = math.sqrt((fro**2 + tr**2) / N) / fro
    assert (emp - cov).norm() / fro < 2 * expected
    assert (emp - torch.eye(64, dtype=emp.dtype)).norm() / fro > 10 * expected  # far from white


def test_channels_are_independent_fields():
    N = 4000
    x = GFFNoise(1.0).sample((N, 3, 8, 8), generator=_gen(3), dtype=torch.float64)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        corr = (x[:, a] * x[:, b]).mean(0) / (x[:, a].std(0) * x[:, b].std(0))
        assert corr.abs().max() < 5 / math.sqrt(N)
    # Exactly: Σ = I_C ⊗ Σ_HW, block diagonal over channels.
    noise = GFFNoise(1.0)
    cov = dense_covariance(noise, (2, 4, 4))
    block = dense_covariance(noise, (4, 4))
    torch.testing.assert_close(cov[:16, :16], block)
    torch.testing.assert_close(cov[16:, 16:], block)
    assert cov[:16, 16:].abs().max() < 1e-15


# --- algebraic identities --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-12)], ids=["f32", "f64"]
)
@pytest.mark.parametrize("power", [0.5, 1.0])
def test_whiten_and_color_are_inverse(dtype, tol, power):
    noise = GFFNoise(power)
    z = torch.randn(4, 3, 16, 12, generator=_gen(), dtype=dtype)
    torch.testing.assert_close(noise.whiten(noise.color(z)), z, rtol=0, atol=tol)
    torch.testing.assert_close(noise.color(noise.whiten(z)), z, rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_apply_is_color_twice_and_dtype_is_preserved(dtype):
    noise = GFFNoise(1.0)
    x = torch.randn(2, 3, 8, 10, generator=_gen(), dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(noise.apply(x), noise.color(noise.color(x)), rtol=0, atol=tol)
    for op in (noise.color, noise.whiten, noise.apply):
        assert op(x).dtype == dtype
    assert noise.sample((2, 8, 8), generator=_gen(), dtype=dtype).dtype == dtype


@pytest.mark.parametrize(("H", "W"), [(8, 8), (7, 5), (6, 9)])
def test_sqrt_covariance_is_real_symmetric_and_squares_to_sigma(H, W):
    noise = GFFNoise(1.0)
    M = _dense_sqrt(noise, H, W)
    torch.testing.assert_close(M, M.T, rtol=0, atol=1e-14)
    torch.testing.assert_close(M @ M, dense_covariance(noise, (H, W)), rtol=0, atol=1e-12)
    # Oracle: the full complex FFT gives the same real operator with zero imaginary part.
    z = torch.randn(3, H, W, generator=_gen(), dtype=torch.float64)
    full = torch.fft.ifft2(noise.amplitude(H, W) * torch.fft.fft2(z))
    assert full.imag.abs().max() < 1e-14
    torch.testing.assert_close(noise.color(z), full.real, rtol=0, atol=1e-14)


def test_power_zero_is_identity():
    noise = GFFNoise(0.0)
    z = torch.randn(2, 3, 6, 7, generator=_gen(), dtype=torch.float64)
    for op in (noise.color, noise.whiten, noise.apply):
        torch.testing.assert_close(op(z), z, rtol=0, atol=1e-14)
    assert torch.equal(noise.amplitude(6, 7), torch.ones(6, 7, dtype=torch.float64))


def test_amplitude_grid_dc_and_normalisation():
    p, H, W = 1.5, 12, 9
    A = GFFNoise(p).amplitude(H, W)
    assert A.shape == (H, W) and A.dtype == torch.float64
    assert abs(float(A.square().mean()) - 1) < 1e-14
    k = _radius(H, W)
    nz = k > 0
    c = A[nz] * k[nz] ** p  # A = c |k|^{-p} away from DC
    torch.testing.assert_close(c, c[0].expand_as(c))
    assert A[0, 0] == A[nz].max()  # DC takes the amplitude of the smallest non-zero |k|
    torch.testing.assert_close(A[0, 0], c[0] * (1 / max(H, W)) ** -p)
    # Even in k: A(-k) = A(k), which keeps the operator real and symmetric.
    torch.testing.assert_close(A, torch.roll(torch.flip(A, (0, 1)), (1, 1), (0, 1)))
    assert GFFNoise(p).amplitude(H, W, dtype=torch.float32).dtype == torch.float32


def test_amplitude_is_a_copy_of_the_cache():
    noise = GFFNoise(1.0)
    noise.amplitude(8, 8).zero_()
    z = torch.randn(8, 8, generator=_gen(), dtype=torch.float64)
    torch.testing.assert_close(noise.whiten(noise.color(z)), z)


# --- shapes, contract, errors ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 6), (3, 8, 6), (2, 3, 8, 6), (2, 2, 3, 7, 5)])
def test_leading_dims_are_independent_slices(shape):
    noise = GFFNoise(1.0)
    z = torch.randn(shape, generator=_gen(), dtype=torch.float64)
    out = noise.color(z)
    assert out.shape == z.shape
    flat = z.reshape(-1, *shape[-2:])
    per_slice = torch.stack([noise.color(f[None])[0] for f in flat]).reshape(shape)
    torch.testing.assert_close(out, per_slice, rtol=0, atol=1e-14)
    torch.testing.assert_close(noise.whiten(out), z, rtol=0, atol=1e-12)


def test_sample_contract_and_reproducibility():
    noise = GFFNoise(1.0)
    assert isinstance(noise, NoiseModel)
    z = white_noise((2, 3, 8, 8), generator=_gen(4), dtype=torch.float64)
    torch.testing.assert_close(noise.sample(z=z), noise.color(z), rtol=0, atol=0)
    a = noise.sample((2, 3, 8, 8), generator=_gen(4), dtype=torch.float64)
    torch.testing.assert_close(a, noise.color(z), rtol=0, atol=0)
    assert not torch.equal(a, noise.sample((2, 3, 8, 8), generator=_gen(5), dtype=torch.float64))


def test_inputs_are_not_mutated():
    noise = GFFNoise(1.0)
    x = torch.randn(2, 3, 8, 8, generator=_gen())
    keep = x.clone()
    for op in (noise.color, noise.whiten, noise.apply):
        op(x)
        assert torch.equal(x, keep)


@pytest.mark.parametrize("power", [-0.5, float("nan"), float("inf"), float("-inf")])
def test_bad_power_raises(power):
    with pytest.raises(ValueError, match="power"):
        GFFNoise(power)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.zeros(8), "last two dims"),
        (torch.zeros(2, 1, 8), "H >= 2"),
        (torch.zeros(2, 8, 1), "W >= 2"),
        (torch.zeros(2, 8, 8, dtype=torch.int64), "floating"),
    ],
    ids=["1d", "H=1", "W=1", "int"],
)
def test_bad_input_raises(x, match):
    noise = GFFNoise(1.0)
    for op in (noise.color, noise.whiten, noise.apply):
        with pytest.raises(ValueError, match=match):
            op(x)


def test_amplitude_rejects_tiny_grid():
    with pytest.raises(ValueError, match="H >= 2"):
        GFFNoise().amplitude(1, 8)


def test_repr():
    assert repr(GFFNoise()) == "GFFNoise(power=1)"
    assert repr(GFFNoise(0.5)) == "GFFNoise(power=0.5)"
