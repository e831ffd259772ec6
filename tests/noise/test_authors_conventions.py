"""The EP and EF authors' conventions, offered as documented options next to nidiff's defaults
(docs/authors-conventions.md): each option reproduces the authors' formula, written out here
independently, and differs from the default where the issue says it does."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nidiff.noise import EdgePreservingNoise, LinearTau, SobelEdges
from nidiff.process import Process
from nidiff.samplers import DDIM
from nidiff.schedule import DiscreteSchedule
from nidiff.spec import ProcessSpec

SCHED = DiscreteSchedule.linear(500)


def _authors_edges(x: torch.Tensor) -> torch.Tensor:
    """The EP authors' edge map: Sobel of the channel sum, zero padding, squared magnitude,
    divided by the batch maximum."""
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=x.dtype)[None, None]
    s = x.sum(1, keepdim=True)
    gx, gy = F.conv2d(s, kx, padding=1), F.conv2d(s, kx.transpose(-1, -2), padding=1)
    mag = gx * gx + gy * gy
    return mag / mag.amax()


def test_channel_sum_is_the_authors_edge_map_and_differs_from_ours():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g, dtype=torch.float64) * 2 - 1
    authors = SobelEdges(squared=True, per_image=False, padding="zeros", channel_sum=True)
    torch.testing.assert_close(authors(x), _authors_edges(x), rtol=1e-12, atol=1e-12)
    # nidiff's default (per-channel squared responses summed, norm, per image) is another map
    ours = SobelEdges()(x)
    gap = (ours - authors(x)).abs().mean().item()
    print(f"mean |ours - authors'| edge map on random RGB: {gap:.3f}")
    assert gap > 0.05
    # one channel: the channel sum changes nothing
    grey = x[:, :1]
    torch.testing.assert_close(SobelEdges(channel_sum=True)(grey), SobelEdges()(grey))


def test_lambda_end_reaches_lambda_max_at_the_transition_point():
    ours = EdgePreservingNoise(SCHED)
    authors = EdgePreservingNoise(SCHED, tau=LinearTau(0.5), lambda_end=0.5)
    assert abs(float(ours.lam(500.0)) - 0.1) < 1e-15 and float(ours.lam(250.0)) < 0.06
    assert abs(float(authors.lam(250.0)) - 0.1) < 1e-15
    assert float(authors.lam(500.0)) > 0.19  # keeps growing after t_phi, as in the authors' code
    # after t_phi the linear tau is 1, so the noise is the same there; before it, it differs
    x0 = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.testing.assert_close(ours.sigma(x0, 400.0), authors.sigma(x0, 400.0))
    assert (ours.sigma(x0, 100.0) - authors.sigma(x0, 100.0)).abs().max() > 1e-3


def test_the_options_survive_the_process_spec():
    noise = EdgePreservingNoise(
        SCHED, lambda_end=0.5, edges=SobelEdges(squared=True, channel_sum=True)
    )
    spec = ProcessSpec.from_process(Process(SCHED, noise))
    back = ProcessSpec.from_dict(spec.to_dict()).process().noise
    assert back.lambda_end == 0.5 and back.edges.channel_sum and back.edges.squared


def test_linear_eta_is_the_ef_authors_variance():
    """EF's code scales the posterior variance by η (not η²): equal at η ∈ {0, 1}."""
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    eps = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    t, s = 300.0, 250.0
    beta = (
        (1 - SCHED.alpha_bar(s))
        / (1 - SCHED.alpha_bar(t))
        * (1 - SCHED.alpha_bar(t) / SCHED.alpha_bar(s))
    )
    for eta in (0.0, 0.3, 1.0):
        ours = DDIM(SCHED, eta=eta).transition(x, eps, t, s).std
        theirs = DDIM(SCHED, eta=eta, linear_eta=True).transition(x, eps, t, s).std
        torch.testing.assert_close(ours**2, eta**2 * beta.to(ours), rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(theirs**2, eta * beta.to(ours), rtol=1e-12, atol=1e-15)
