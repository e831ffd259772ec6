"""NI-SMLD on Gaussian data: the exact score makes annealed Langevin sample p_σ_L."""

import torch

from nidiff.noise import GFFNoise, IsotropicNoise, dense_covariance
from nidiff.smld import annealed_langevin, geometric_sigmas, smld_loss, smld_noisy

SHAPE = (1, 4, 4)
D = 16


def _gaussian(seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(D, D, generator=g, dtype=torch.float64) / 4
    return torch.randn(D, generator=g, dtype=torch.float64), a @ a.T + 0.2 * torch.eye(
        D, dtype=torch.float64
    )


class ExactEps:
    """ε̂(x, σ) = σ Σ^{1/2} (C + σ²Σ)^{-1} (x − μ): the white noise implied by the exact score."""

    def __init__(self, mu, C, noise):
        self.mu, self.C, self.noise = mu, C, noise
        self.S = dense_covariance(noise, SHAPE)

    def __call__(self, x, sigma, cond=None):
        s = float(sigma)
        r = (x.reshape(len(x), D) - self.mu).T
        y = torch.linalg.solve(self.C + s * s * self.S, r).T.reshape(x.shape)
        return s * self.noise.color(y)


def test_noisy_and_loss_of_the_exact_model_is_its_conditional_variance():
    mu, C = _gaussian()
    noise = GFFNoise()
    g = torch.Generator().manual_seed(1)
    x0 = mu + torch.randn(4000, D, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(C).T
    x0 = x0.reshape(-1, *SHAPE)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x = smld_noisy(x0, torch.tensor(0.5), eps, noise)
    assert torch.allclose(x - x0, 0.5 * noise.color(eps))
    loss = smld_loss(ExactEps(mu, C, noise), x0, torch.tensor(0.5), eps, noise)
    assert loss.shape == x0.shape
    # The exact posterior-mean denoiser has loss < 1 per element (white ε has variance 1).
    assert 0.05 < float(loss.mean()) < 1.0


def test_annealed_langevin_samples_the_noised_gaussian():
    mu, C = _gaussian()
    for noise in (IsotropicNoise(), GFFNoise()):
        sigmas = geometric_sigmas(5.0, 0.1, 6)
        model = ExactEps(mu, C, noise)
        g = torch.Generator().manual_seed(2)
        x_init = float(sigmas[0]) * noise.color(
            torch.randn(3000, *SHAPE, generator=g, dtype=torch.float64)
        )
        x = annealed_langevin(
            model, x_init, sigmas, noise=noise, n_steps=60, step_lr=0.02, generator=g
        ).reshape(-1, D)
        target = C + float(sigmas[-1]) ** 2 * dense_covariance(noise, SHAPE)
        err_mu = float((x.mean(0) - mu).abs().max())
        err_cov = float(
            torch.linalg.matrix_norm(torch.cov(x.T) - target) / torch.linalg.matrix_norm(target)
        )
        assert err_mu < 0.1, f"{noise}: mean error {err_mu:.3f}"
        assert err_cov < 0.1, f"{noise}: relative covariance error {err_cov:.3f}"


def test_bad_input():
    import pytest

    with pytest.raises(ValueError):
        geometric_sigmas(0.1, 1.0, 5)
    with pytest.raises(ValueError):
        annealed_langevin(lambda x, s, c: x, torch.zeros(1, *SHAPE), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError):
        annealed_langevin(
            lambda x, s, c: x, torch.zeros(1, *SHAPE), torch.tensor([2.0, 1.0]), step_lr=0.0
        )
