"""PSNR, SSIM and their masked (background-preservation) forms."""

from __future__ import annotations

import math

import pytest
import torch

from nidiff.metrics import masked_mse, masked_psnr, masked_ssim, mse, psnr, ssim, ssim_map


def _images(shape=(3, 2, 24, 20), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1


def _noisy(x, scale=0.2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (x + scale * torch.randn(x.shape, generator=g, dtype=x.dtype)).clamp(-1, 1)


def test_psnr_identical_is_inf_and_known_mse_gives_known_value():
    x = _images()
    assert torch.isinf(psnr(x, x)).all()
    y = x.clone()
    y[:, :, :, :10] = y[:, :, :, :10] * 0.5  # stays in [-1, 1]
    err = (x - y).square().flatten(1).mean(1)
    torch.testing.assert_close(mse(x, y), err)
    torch.testing.assert_close(psnr(x, y), 10 * torch.log10(4 / err))
    # A constant offset of 0.1 everywhere: MSE = 0.01, PSNR = 10 log10(4 / 0.01) ≈ 26.02 dB.
    z = torch.zeros(2, 1, 8, 8)
    assert psnr(z, z + 0.1).tolist() == pytest.approx([10 * math.log10(400)] * 2)
    assert psnr(z, z + 0.1, data_range=1.0)[0] == pytest.approx(20.0)


def test_ssim_identical_is_one_and_drops_with_noise():
    x = _images()
    torch.testing.assert_close(ssim(x, x), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(ssim(x, x, sigma=None), torch.ones(3, dtype=torch.float64))
    s1, s2 = ssim(x, _noisy(x, 0.1)), ssim(x, _noisy(x, 0.5))
    assert (s2 < s1).all() and (s1 < 1).all()
    assert ssim_map(x, x).shape == (3, 2, 14, 10)
    assert ssim_map(x, x, sigma=None, window=5).shape == (3, 2, 20, 16)


@pytest.mark.parametrize("gaussian", [True, False])
def test_ssim_matches_skimage(gaussian):
    metrics = pytest.importorskip("skimage.metrics")
    x = _images((2, 3, 32, 28), seed=3)
    y = _noisy(x, 0.3, seed=4)
    if gaussian:
        ours = ssim(x, y)  # 11x11 Gaussian, σ = 1.5, population covariance
        kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    else:
        ours = ssim(x, y, sigma=None, window=7)
        kw = {"win_size": 7}
    for i in range(2):
        ref = metrics.structural_similarity(
            x[i].numpy(), y[i].numpy(), data_range=2.0, channel_axis=0, **kw
        )
        assert float(ours[i]) == pytest.approx(float(ref), abs=1e-3)
        assert abs(float(ours[i]) - float(ref)) < 1e-6  # in practice equal to rounding


BIG = (3, 2, 40, 36)


def _mask(shape=(3, 1, 40, 36)):
    m = torch.zeros(shape)
    m[..., 12:26, 12:24] = 1  # leaves room for 11x11 windows above and below
    return m


@pytest.mark.parametrize(
    "metric",
    [masked_mse, masked_psnr, masked_ssim, lambda x, y, m: masked_ssim(x, y, m, sigma=None)],
)
def test_background_metrics_ignore_the_masked_region(metric):
    x = _images(BIG)
    y = _noisy(x, 0.2)
    m = _mask()
    y2 = y.clone()
    y2[m.expand_as(y2) == 1] = torch.rand(int(m.expand_as(y2).sum()), dtype=y.dtype) * 2 - 1
    assert not torch.equal(y, y2)
    torch.testing.assert_close(metric(x, y, m), metric(x, y2, m), rtol=0, atol=1e-12)


def test_inside_metrics_ignore_the_background():
    x = _images(BIG)
    y = _noisy(x, 0.2)
    m = _mask()
    y2 = torch.where(m == 0, -y, y)  # change the background only
    for fn in (masked_mse, masked_psnr):
        torch.testing.assert_close(fn(x, y, m, inside=True), fn(x, y2, m, inside=True))
        assert not torch.allclose(fn(x, y, m), fn(x, y2, m))
    torch.testing.assert_close(
        masked_ssim(x, y, m, inside=True, sigma=None, window=3),
        masked_ssim(x, y2, m, inside=True, sigma=None, window=3),
    )


def test_masked_metrics_with_an_empty_mask_equal_the_plain_ones():
    x, m0 = _images(), torch.zeros(24, 20)
    y = _noisy(x)
    torch.testing.assert_close(masked_mse(x, y, m0), mse(x, y))
    torch.testing.assert_close(masked_psnr(x, y, m0), psnr(x, y))
    torch.testing.assert_close(masked_ssim(x, y, m0), ssim(x, y))


def test_masked_mse_value():
    x = torch.zeros(1, 1, 4, 4)
    y = torch.zeros(1, 1, 4, 4)
    y[..., 0, :] = 0.5  # the top row: in the background
    y[..., 3, :] = 1.0  # the bottom row: masked
    m = torch.zeros(4, 4)
    m[3] = 1
    assert float(masked_mse(x, y, m)) == pytest.approx(0.25 * 4 / 12)
    assert float(masked_mse(x, y, m, inside=True)) == pytest.approx(1.0)


def test_validation_errors():
    x = _images()
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:2])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ssim(x[0], x[0])
    with pytest.raises(ValueError, match="data_range"):
        psnr(x * 3, x)
    with pytest.raises(ValueError, match="non-finite"):
        psnr(x, torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        ssim(x[..., :8, :8], x[..., :8, :8])
    with pytest.raises(ValueError, match="binary"):
        masked_mse(x, x, torch.full((24, 20), 0.5))
    with pytest.raises(ValueError, match="no pixel outside"):
        masked_mse(x, x, torch.ones(24, 20))
    with pytest.raises(ValueError, match="broadcast"):
        masked_mse(x, x, torch.zeros(1, 1, 5, 5))
    with pytest.raises(ValueError, match="window fits"):
        thin = torch.ones(24, 20)
        thin[:, :4] = 0
        masked_ssim(x, x, thin)
    with pytest.raises(ValueError, match="odd"):
        ssim(x, x, window=4)
    x = _images(BIG)
    torch.testing.assert_close(masked_ssim(x, x, _mask()[0, 0]), torch.ones(3, dtype=x.dtype))
