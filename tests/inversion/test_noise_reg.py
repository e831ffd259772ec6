"""pix2pix-zero's noise regularization (Parmar et al. 2023, Sec. 3.1): its losses tell white
noise from correlated noise, its gradient steps whiten a correlated prediction, its random
shifts replay from a seeded generator, and it plugs into DDIM inversion."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from gaussian_fields import smooth_covariance

from nidiff.inversion.ddim import ddim_invert
from nidiff.inversion.noise_reg import NoiseRegularizer, auto_correlation_loss, kl_loss
from nidiff.models import GaussianDenoiser
from nidiff.noise import IsotropicNoise
from nidiff.process import Process
from nidiff.schedule import DiscreteSchedule, linspace_grid

SHAPE = (1, 4, 32, 32)  # an SD latent's channels, side 32: pyramid levels 32, 16, 8


def _white(seed: int = 0) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def _correlated(seed: int = 0) -> torch.Tensor:
    """Unit-variance noise correlated over ~4 pixels (white noise blurred by a 5×5 box)."""
    w = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))
    blurred = F.avg_pool2d(F.pad(w, (2, 2, 2, 2), mode="circular"), 5, stride=1)
    return blurred / blurred.std()


def test_auto_correlation_loss_is_small_on_white_noise_and_large_on_correlated_noise():
    """With the same shifts drawn (the same generator seed), correlated noise keeps a shifted
    product near its correlation while white noise averages it to ~0; only a zero shift (drawn
    with probability 1/4 at the 8² level, the authors' ``randint(side // 2)``) gives both
    mean(η²)² ≈ 1. Averaged over 16 draws the correlated loss is several times the white one."""
    white, corr = [], []
    for s in range(16):
        white.append(float(auto_correlation_loss(_white(s), torch.Generator().manual_seed(s))))
        corr.append(float(auto_correlation_loss(_correlated(s), torch.Generator().manual_seed(s))))
    mean_w, mean_c = sum(white) / 16, sum(corr) / 16
    print(f"L_auto: white {mean_w:.3f}, correlated {mean_c:.3f} (mean of 16 draws)")
    assert mean_c > 3 * mean_w
    assert sum(c > w for c, w in zip(corr, white, strict=True)) >= 14


def test_auto_correlation_of_a_shift_is_the_analytic_product():
    """One level (side 8, no pyramid), one channel: the loss is
    mean(η·roll(η, s, H))² + mean(η·roll(η, s, W))² for the drawn shift s."""
    eta = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(5)
    s = int(torch.randint(4, (1,), generator=torch.Generator().manual_seed(5)))
    want = (eta * eta.roll(s, 2)).mean() ** 2 + (eta * eta.roll(s, 3)).mean() ** 2
    assert float(auto_correlation_loss(eta, g)) == pytest.approx(float(want), rel=1e-6)


def test_kl_loss_is_zero_for_standard_noise_and_analytic_for_scaled_noise():
    """2·KL(N(μ, σ²) ‖ N(0, 1)) = σ² + μ² - 1 - log σ²: ~0 for N(0, 1) draws, 3 - log 4 for
    2·N(0, 1), 1 for N(1, 1)."""
    w = torch.randn(4, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    assert abs(float(kl_loss(w))) < 1e-3
    assert float(kl_loss(2 * w)) == pytest.approx(3 - math.log(4), abs=0.02)
    assert float(kl_loss(w + 1)) == pytest.approx(1.0, abs=0.02)


def test_regularizer_whitens_correlated_noise_and_replays_with_a_seed():
    eps = 1.5 * _correlated(1) + 0.3  # correlated, too wide, off centre
    g = torch.Generator().manual_seed(0)
    before = float(auto_correlation_loss(eps, torch.Generator().manual_seed(9)))
    out = NoiseRegularizer(torch.Generator().manual_seed(7))(eps)
    after = float(auto_correlation_loss(out, torch.Generator().manual_seed(9)))
    print(f"L_auto {before:.3f} -> {after:.3f}, KL {float(kl_loss(eps)):.3f} -> "
          f"{float(kl_loss(out)):.3f}")  # fmt: skip
    assert after < 0.5 * before and float(kl_loss(out)) < 0.5 * float(kl_loss(eps))
    assert not out.requires_grad and out.shape == eps.shape
    again = NoiseRegularizer(torch.Generator().manual_seed(7))(eps)
    other = NoiseRegularizer(torch.Generator().manual_seed(8))(eps)
    assert torch.equal(out, again)  # the shifts come from the generator
    assert not torch.equal(out, other)
    assert torch.equal(NoiseRegularizer(g, steps=0)(eps), eps)


@pytest.mark.parametrize(
    "kwargs, word",
    [({"steps": -1}, "steps"), ({"rolls": 1.5}, "rolls"), ({"steps": True}, "steps"),
     ({"lambda_kl": -1.0}, "lambda_kl"), ({"lambda_auto": float("nan")}, "lambda_auto")],
)  # fmt: skip
def test_regularizer_refuses_bad_settings(kwargs, word):
    with pytest.raises(ValueError, match=word):
        NoiseRegularizer(**kwargs)


def test_ddim_inversion_takes_the_regularizer():
    """``regularize`` acts on every prediction: the identity leaves the inversion bit for bit,
    the regularizer changes it (and is replayable with the same seed)."""
    sched = DiscreteSchedule.linear(1000)
    proc = Process(sched, IsotropicNoise())
    dims = (1, 16, 16)
    cov = smooth_covariance(scale=0.5, length2=2.0, nugget=0.05, side=16)
    model = GaussianDenoiser(torch.zeros(dims), cov, sched, proc.noise)
    x0 = torch.randn(2, *dims, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = linspace_grid(sched, 5)
    plain = ddim_invert(model, x0, proc, grid)
    same = ddim_invert(model, x0, proc, grid, regularize=lambda e: e)
    assert torch.equal(plain.x_T, same.x_T)
    reg = [ddim_invert(model, x0, proc, grid,
                       regularize=NoiseRegularizer(torch.Generator().manual_seed(1))).x_T
           for _ in range(2)]  # fmt: skip
    assert torch.equal(reg[0], reg[1])
    assert float((reg[0] - plain.x_T).norm() / plain.x_T.norm()) > 1e-3
