"""NI-SMLD sampling: annealed Langevin (the default rule of a VE process) with the exact score of
Gaussian data reaches the data law, isotropic and GFF noise; the ladder and the rule's checks."""

import math

import pytest
import torch

from nidiff.models import GaussianDenoiser
from nidiff.noise import GFFNoise, IsotropicNoise
from nidiff.process import Process
from nidiff.samplers import Langevin, sample
from nidiff.samplers.registry import build_rule, default_rule, default_sampler, rule_spec
from nidiff.schedule import DiscreteSchedule, VESchedule, own_grid

SHAPE = (1, 4, 4)
D = 16


def _gaussian():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(D, D, generator=g, dtype=torch.float64) / 4
    mu = 0.5 * torch.randn(D, generator=g, dtype=torch.float64)
    return mu, a @ a.T + 0.05 * torch.eye(D, dtype=torch.float64)


def _errors(noise, steps, n=2000):
    """Relative errors of the sample mean and covariance against N(mu, C)."""
    mu, C = _gaussian()
    schedule = VESchedule(20.0, 0.01)
    process = Process(schedule, noise)
    model = GaussianDenoiser(mu.reshape(SHAPE), C, schedule, noise)
    g = torch.Generator().manual_seed(1)
    x_T = process.prior(torch.randn(n, *SHAPE, generator=g, dtype=torch.float64))
    res = sample(model, x_T, own_grid(schedule, steps), default_rule(process), noise=g)
    x = res.x0.reshape(n, D)
    mean_err = float((x.mean(0) - mu).norm() / C.trace().sqrt())
    cov_err = float((torch.cov(x.T) - C).norm() / C.norm())
    return mean_err, cov_err, res.nfe


@pytest.mark.parametrize("noise", [IsotropicNoise(), GFFNoise()], ids=["isotropic", "gff"])
def test_annealed_langevin_reaches_the_gaussian_data_law(noise):
    short = _errors(noise, 60)
    long = _errors(noise, 500)
    print(f"{type(noise).__name__}: 60 steps mean/cov error {short[0]:.4f}/{short[1]:.4f}; "
          f"500 steps {long[0]:.4f}/{long[1]:.4f}")  # fmt: skip
    assert long[2] == 500  # one model call per level (the last one denoises)
    assert long[0] < 0.05 and long[1] < 0.2
    assert long[1] < short[1] / 2  # the ladder's length is what brings it there


def test_a_ve_process_defaults_to_langevin_on_the_geometric_ladder():
    schedule = VESchedule(50.0, 0.01)
    process = Process(schedule, GFFNoise())
    assert default_sampler(process) == "langevin"
    rule = default_rule(process)
    assert isinstance(rule, Langevin)
    assert rule_spec(rule) == {"sampler": "langevin", "step_lr": None}
    assert rule.epsilon == pytest.approx(2e-5)  # Song & Ermon's ε at σ_min = 0.01
    assert type(default_rule(process, 0.0)).__name__ == "DDIM"  # η < 1: the deterministic rule
    grid = own_grid(schedule, 10)
    assert float(grid.t[0]) == 50.0 and float(grid.t[-1]) == pytest.approx(0.01)
    assert float(grid.t_prev[-1]) == 0.0
    ratios = grid.t[1:] / grid.t[:-1]
    assert torch.allclose(ratios, ratios[:1].expand_as(ratios))
    assert default_sampler(Process(DiscreteSchedule.linear(1000))) == "ddpm"


def test_langevin_step_is_the_preconditioned_update():
    schedule = VESchedule(10.0, 0.1)
    noise = GFFNoise()
    rule = build_rule("langevin", Process(schedule, noise), step_lr=0.003)
    x = torch.randn(2, *SHAPE, dtype=torch.float64)
    eps = torch.randn(2, *SHAPE, dtype=torch.float64)
    t, tp = torch.tensor(2.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    tr = rule.transition(x, eps, t, tp)
    alpha = 0.003 * (2.0 / 0.1) ** 2
    assert torch.allclose(tr.mean, x - alpha / 2.0 * noise.color(eps))
    assert float(tr.std) == pytest.approx(math.sqrt(2 * alpha))
    assert torch.allclose(tr.x0_hat, x - 2.0 * noise.color(eps))
    last = rule.transition(x, eps, t, torch.tensor(0.0, dtype=torch.float64))
    assert last.is_deterministic and torch.allclose(last.mean, x - 2.0 * noise.color(eps))


def test_langevin_refuses_what_it_cannot_sample():
    with pytest.raises(ValueError, match="variance-exploding"):
        Langevin(DiscreteSchedule.linear(1000))
    with pytest.raises(ValueError, match="step_lr"):
        Langevin(VESchedule(), step_lr=0.0)
    with pytest.raises(ValueError, match="steps >= 2"):
        own_grid(VESchedule(), 1)
