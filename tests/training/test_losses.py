"""Training objectives: per-element values, the forward marginal they train on, their targets."""

from __future__ import annotations

import pytest
import torch

from nidiff.noise import (
    DiagonalNoise,
    EdgePreservingNoise,
    GFFNoise,
    IsotropicNoise,
    dense_covariance,
)
from nidiff.process import Process
from nidiff.schedule import DiscreteSchedule
from nidiff.training.losses import EdgeLoss, EpsilonLoss

SCHEDULE = DiscreteSchedule.linear(T=100)
SHAPE = (3, 2, 6, 5)  # (B, C, H, W): non-square, several channels


def _data(seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(SHAPE, generator=g, dtype=dtype) * 2 - 1
    eps = torch.randn(SHAPE, generator=g, dtype=dtype)
    t = torch.tensor([1.0, 37.0, 100.0], dtype=torch.float64)
    return x0, eps, t


def _noises():
    std = torch.linspace(0.5, 1.5, 6 * 5).reshape(1, 1, 6, 5).to(torch.float64)
    return [IsotropicNoise(), GFFNoise(1.0), DiagonalNoise(std)]


class _Recorder:
    """A model that returns a fixed output and records what it was called with."""

    def __init__(self, out: torch.Tensor):
        self.out, self.calls = out, []

    def __call__(self, x_t, t, cond=None):
        self.calls.append((x_t, t, cond))
        return self.out


@pytest.mark.parametrize("noise", _noises(), ids=lambda n: type(n).__name__)
def test_epsilon_loss_is_per_element_squared_error_of_white_eps(noise):
    x0, eps, t = _data()
    loss_fn = EpsilonLoss(SCHEDULE, noise)
    out = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    model = _Recorder(out)
    cond = torch.tensor([0, 1, 2])
    loss = loss_fn(model, x0, t, eps, cond)
    assert loss.shape == x0.shape  # per element: reduction is the caller's
    torch.testing.assert_close(loss, (out - eps).square(), rtol=0, atol=0)
    (x_t, t_seen, cond_seen) = model.calls[0]
    assert t_seen is t and cond_seen is cond
    torch.testing.assert_close(x_t, Process(SCHEDULE, noise).q_sample(x0, t, eps))


def test_epsilon_loss_noisy_matches_q_sample_for_every_time_shape():
    x0, eps, _ = _data()
    loss_fn, proc = EpsilonLoss(SCHEDULE, GFFNoise()), Process(SCHEDULE, GFFNoise())
    per_pixel = torch.arange(1, 1 + x0.numel(), dtype=torch.float64).reshape(SHAPE) % 100 + 1
    for t in (torch.tensor(50.0, dtype=torch.float64), torch.tensor([3.0, 50.0, 99.0]), per_pixel):
        x_t, target = loss_fn.noisy(x0, t, eps)
        assert target is eps
        torch.testing.assert_close(x_t, proc.q_sample(x0, t, eps))


def test_gff_loss_colours_the_noise_with_the_covariance_square_root():
    """x_t − √ᾱ x0 = √(1−ᾱ) Σ^{1/2} ε, Σ^{1/2} from the dense covariance (eigh), not GFF code."""
    x0, eps, t = _data()
    noise = GFFNoise(1.0)
    x_t, _ = EpsilonLoss(SCHEDULE, noise).noisy(x0, t, eps)
    cov = dense_covariance(noise, SHAPE[1:])
    w, V = torch.linalg.eigh(cov)
    sqrt_cov = V @ torch.diag(w.clamp_min(0).sqrt()) @ V.T
    a, b = SCHEDULE.coefficients(t)
    coloured = (eps.reshape(SHAPE[0], -1) @ sqrt_cov.T).reshape(SHAPE)
    expected = a.reshape(-1, 1, 1, 1) * x0 + b.reshape(-1, 1, 1, 1) * coloured
    torch.testing.assert_close(x_t, expected, rtol=1e-10, atol=1e-10)
    # and the coloured noise is not white: GFF correlates neighbouring pixels
    assert not torch.allclose(x_t, a.reshape(-1, 1, 1, 1) * x0 + b.reshape(-1, 1, 1, 1) * eps)


def test_edge_loss_target_is_sigma_times_eps():
    """EP eq. 15: the regression target is σ_t(x0) ⊙ ε; x_t = √ᾱ x0 + σ_t ⊙ ε (eq. 11)."""
    x0, eps, t = _data()
    noise = EdgePreservingNoise(SCHEDULE)
    loss_fn = EdgeLoss(noise)
    x_t, target = loss_fn.noisy(x0, t, eps)
    sigma = noise.sigma(x0, t)
    torch.testing.assert_close(target, sigma * eps, rtol=1e-12, atol=1e-12)
    a = SCHEDULE.coefficients(t)[0].reshape(-1, 1, 1, 1)
    torch.testing.assert_close(x_t, a * x0 + sigma * eps, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_t, Process(SCHEDULE, noise).q_sample(x0, t, eps))
    # early times: edges get visibly less noise than the white ε would give
    b = SCHEDULE.coefficients(t)[1].reshape(-1, 1, 1, 1)
    assert bool((target[0].abs() < (b[0] * eps[0]).abs() - 1e-9).any())
    out = torch.zeros_like(x0)
    loss = loss_fn(_Recorder(out), x0, t, eps)
    assert loss.shape == x0.shape
    torch.testing.assert_close(loss, target.square(), rtol=0, atol=0)


def test_a_perfect_model_has_zero_loss():
    """On one-point (Dirac) data the Bayes denoiser recovers the noise exactly: zero loss."""
    x0, eps, t = _data()
    for noise in _noises():
        loss_fn = EpsilonLoss(SCHEDULE, noise)

        def oracle(x_t, t, cond=None, noise=noise):
            a, b = (c.reshape(-1, 1, 1, 1) for c in SCHEDULE.coefficients(t))
            return noise.whiten((x_t - a * x0) / b)

        assert float(loss_fn(oracle, x0, t, eps).max()) < 1e-20

    edge = EdgeLoss(EdgePreservingNoise(SCHEDULE))

    def edge_oracle(x_t, t, cond=None):
        return x_t - SCHEDULE.coefficients(t)[0].reshape(-1, 1, 1, 1) * x0

    assert float(edge(edge_oracle, x0, t, eps).max()) < 1e-20


def test_loss_keeps_float32_and_does_not_touch_inputs():
    x0, eps, t = _data(dtype=torch.float32)
    x0_copy, eps_copy = x0.clone(), eps.clone()
    for loss_fn in (EpsilonLoss(SCHEDULE, GFFNoise()), EdgeLoss(EdgePreservingNoise(SCHEDULE))):
        loss = loss_fn(_Recorder(torch.zeros_like(x0)), x0, t, eps)
        assert loss.dtype == torch.float32 and loss.shape == x0.shape
    assert torch.equal(x0, x0_copy) and torch.equal(eps, eps_copy)


def test_edge_loss_rejects_mismatched_noise():
    x0, eps, t = _data()
    with pytest.raises(ValueError, match="shape"):
        EdgeLoss(EdgePreservingNoise(SCHEDULE)).noisy(x0, t, eps[:, :1])
