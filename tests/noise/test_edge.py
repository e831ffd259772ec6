"""Edge-preserving noise (EP eq. 11): transition functions, Sobel edges, the σ_t map."""

from __future__ import annotations

import math

import pytest
import torch

from nidiff.noise.diagonal import DiagonalNoise
from nidiff.noise.edge import CosineTau, EdgePreservingNoise, LinearTau, SigmoidTau, SobelEdges
from nidiff.schedule import DiscreteSchedule, VPSchedule

SCHED = DiscreteSchedule.linear(1000)
TAUS = [LinearTau(0.5), CosineTau(0.5), SigmoidTau(0.5, 10.0), LinearTau(1.0), CosineTau(0.25)]


def one(u):
    return torch.ones_like(u)


def images(shape=(3, 3, 16, 16), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=dtype) * 2 - 1


def step_image(width=8, height=6, col=4, jump=1.0):
    """(H, W) image: 0 left of ``col``, ``jump`` from ``col`` on."""
    x = torch.zeros(height, width, dtype=torch.float64)
    x[:, col:] = jump
    return x


# ----------------------------------------------------------------------------- transition τ
@pytest.mark.parametrize("tau", TAUS, ids=repr)
def test_tau_endpoints_range_monotone(tau):
    u = torch.linspace(0, 1, 1001, dtype=torch.float64)
    v = tau(u)
    assert float(v[0]) == 0.0
    assert torch.allclose(v[u >= tau.t_phi], torch.ones(1, dtype=torch.float64), atol=1e-12)
    assert bool((v >= 0).all()) and bool((v <= 1).all())
    assert bool((v.diff() >= -1e-15).all())
    assert bool((v[(u > 0) & (u < tau.t_phi)] < 1).all())


def test_linear_tau_is_continuous_at_transition():
    tau = LinearTau(0.5)
    u = torch.tensor([0.25, 0.5 - 1e-9, 0.5], dtype=torch.float64)
    assert torch.allclose(tau(u), torch.tensor([0.5, 1.0, 1.0], dtype=torch.float64), atol=1e-8)


def test_sigmoid_tau_is_centred_at_half_t_phi():
    tau = SigmoidTau(t_phi=0.6, k=8.0)
    assert float(tau(torch.tensor(0.3, dtype=torch.float64))) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
@pytest.mark.parametrize("cls", [LinearTau, CosineTau, SigmoidTau])
def test_bad_t_phi_raises(cls, bad):
    with pytest.raises(ValueError, match="t_phi"):
        cls(bad)


def test_bad_sigmoid_k_raises():
    with pytest.raises(ValueError, match="k="):
        SigmoidTau(0.5, k=0.0)


# ----------------------------------------------------------------------------- Sobel edges
def test_sobel_vertical_step_has_two_columns_of_maxima():
    x = step_image(width=8, col=4).expand(2, 3, 6, 8)
    G = SobelEdges()(x)
    assert G.shape == (2, 1, 6, 8)
    expected = torch.zeros(6, 8, dtype=torch.float64)
    expected[:, 3:5] = 1.0  # the Sobel x-kernel sees the jump from columns col-1 and col
    assert torch.equal(G[0, 0], expected) and torch.equal(G[1, 0], expected)


def test_sobel_shapes_3d_and_4d_agree():
    x = images((2, 10, 12))
    G3 = SobelEdges()(x)
    G4 = SobelEdges()(x[:, None])
    assert G3.shape == (2, 10, 12) and G4.shape == (2, 1, 10, 12)
    assert torch.equal(G3, G4[:, 0])
    assert float(G3.amax(dim=(1, 2)).min()) == 1.0 and float(G3.min()) >= 0.0


def test_sobel_sums_squared_channel_gradients():
    # Opposite-sign edges in two channels must not cancel.
    x = torch.stack([step_image(), -step_image()])[None]
    G = SobelEdges(per_image=False)(x)
    assert float(G.amax()) == 1.0 and float(G[0, 0, :, 3].min()) == 1.0


def test_sobel_squared_variant():
    x = step_image(width=12, col=3, jump=1.0)
    x[:, 8:] += 0.5  # a second, half-height step
    G = SobelEdges()(x[None])[0]
    G2 = SobelEdges(squared=True)(x[None])[0]
    assert float(G[:, 8].min()) == pytest.approx(0.5, abs=1e-12)
    assert float(G2[:, 8].min()) == pytest.approx(0.25, abs=1e-12)
    assert torch.allclose(G2, G.square(), atol=1e-12)


def test_per_image_vs_batch_normalisation():
    strong, weak = step_image(jump=1.0), step_image(jump=0.5)
    x = torch.stack([strong, weak])  # (2, H, W)
    per_image = SobelEdges()(x)
    batch = SobelEdges(per_image=False)(x)
    assert float(per_image[1].amax()) == 1.0 and float(batch[1].amax()) == pytest.approx(0.5)
    assert torch.allclose(per_image[0], batch[0])
    # Batch normalisation couples images: changing image 0 changes image 1's map.
    x2 = torch.stack([2 * strong, weak])
    assert torch.equal(SobelEdges()(x2)[1], per_image[1])
    assert not torch.allclose(SobelEdges(per_image=False)(x2)[1], batch[1])


def test_sobel_flat_image_is_zero_and_zero_padding_adds_a_frame():
    x = torch.full((2, 3, 8, 8), 0.7, dtype=torch.float64)
    assert torch.equal(SobelEdges()(x), torch.zeros(2, 1, 8, 8, dtype=torch.float64))
    assert torch.equal(SobelEdges()(torch.zeros(1, 8, 8)), torch.zeros(1, 8, 8))
    framed = SobelEdges(padding="zeros")(x)
    assert float(framed[0, 0, 0, 0]) > 0 and float(framed[0, 0, 3:5, 3:5].abs().max()) == 0.0


def test_sobel_bad_input():
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        SobelEdges()(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="floating"):
        SobelEdges()(torch.zeros(1, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="padding"):
        SobelEdges(padding="reflect")


# ----------------------------------------------------------------------------- EP noise
def test_lam_and_tau_endpoints():
    ep = EdgePreservingNoise(SCHED, lambda_min=1e-4, lambda_max=1e-1)
    assert float(ep.lam(0)) == pytest.approx(1e-4, rel=1e-12)
    assert float(ep.lam(1000)) == pytest.approx(1e-1, rel=1e-12)
    assert float(ep.lam(500)) == pytest.approx(0.5 * (1e-4 + 1e-1), rel=1e-12)
    assert float(ep.tau(0)) == 0.0 and float(ep.tau(250)) == 0.5
    assert float(ep.tau(500)) == 1.0 and float(ep.tau(1000)) == 1.0
    vp = EdgePreservingNoise(VPSchedule())
    assert float(vp.lam(1.0)) == pytest.approx(1e-1) and float(vp.tau(0.5)) == 1.0
    assert ep.tau(torch.tensor([0.0, 100.0])).dtype == torch.float64


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lams", [(1e-4, 1e-1), (1e-5, 1e-5)])
def test_tau_one_is_ddpm(seed, lams):
    x0 = images(seed=seed)
    ep = EdgePreservingNoise(SCHED, *lams, tau=one)
    for t in [0, 1, 37, 500, 999, 1000]:
        expected = math.sqrt(1 - float(SCHED.alpha_bar(t)))
        sig = ep.sigma(x0, t)
        assert torch.allclose(sig, torch.full_like(sig, expected), atol=1e-14, rtol=0)


@pytest.mark.parametrize("tau", [*TAUS, one], ids=repr)
@pytest.mark.parametrize("lams", [(1e-4, 1e-1), (1e-5, 1e-5), (0.3, 2.0)])
def test_flat_image_gets_ddpm_noise(tau, lams):
    x0 = torch.full((2, 3, 9, 7), -0.4, dtype=torch.float64)
    ep = EdgePreservingNoise(SCHED, *lams, tau=tau)
    for t in [0, 3, 250, 800]:
        sig = ep.sigma(x0, t)
        assert sig.shape == (2, 1, 9, 7)
        expected = math.sqrt(1 - float(SCHED.alpha_bar(t)))
        assert torch.allclose(sig, torch.full_like(sig, expected), atol=1e-14, rtol=0)


@pytest.mark.parametrize("tau", TAUS, ids=repr)
def test_edges_get_less_noise(tau):
    x0 = images(seed=1)
    ep = EdgePreservingNoise(SCHED, tau=tau)
    G = SobelEdges()(x0)
    for t in [1, 50, 200, 499, 700, 1000]:
        sig, full = ep.sigma(x0, t), math.sqrt(1 - float(SCHED.alpha_bar(t)))
        assert bool((sig <= full * (1 + 1e-15)).all())
        if float(ep.tau(t)) < 1:
            assert bool((sig[G > 0] < full).all())
            # where G = 1 (every image has such a pixel), σ_t is eq. 11 with G = 1
            lam, tau_t = float(ep.lam(t)), float(ep.tau(t))
            strongest = full / ((1 - tau_t) * math.sqrt(1 + 1 / lam) + tau_t)
            assert torch.allclose(sig[G == 1], torch.tensor(strongest, dtype=sig.dtype))
            assert (G == 1).sum() >= x0.shape[0]
        else:
            assert torch.allclose(sig, torch.full_like(sig, full), atol=1e-14, rtol=0)


def test_relative_std_finite_at_t0_and_at_matches_sigma():
    x0 = images(seed=2)
    ep = EdgePreservingNoise(SCHED)
    rel0 = ep.relative_std(x0, 0)
    assert bool(torch.isfinite(rel0).all()) and float(rel0.max()) <= 1.0 and float(rel0.min()) > 0
    t = torch.tensor([10.0, 300.0, 900.0])
    noise = ep.at(x0, t)
    assert isinstance(noise, DiagonalNoise)
    eps = images(seed=3)
    full = SCHED.coefficients(t)[1].reshape(3, 1, 1, 1)
    assert torch.allclose(full * noise.color(eps), ep.sigma(x0, t) * eps, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_consistency_and_dtypes(dtype):
    x0, eps = images(seed=4, dtype=dtype), images(seed=5, dtype=dtype)
    x0_copy, eps_copy = x0.clone(), eps.clone()
    ep = EdgePreservingNoise(SCHED)
    t = torch.tensor([0, 120, 640])
    x_t, target = ep.forward(x0, t, eps)
    assert x_t.dtype == target.dtype == dtype and x_t.shape == target.shape == x0.shape
    sig = ep.sigma(x0, t)
    assert sig.dtype == dtype and sig.shape == (3, 1, 16, 16)
    a, s = SCHED.coefficients(t)
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    assert torch.allclose(target, sig * eps, atol=tol)
    assert torch.allclose(x_t, a.to(dtype).reshape(3, 1, 1, 1) * x0 + target, atol=tol)
    # eq. 11 through the DiagonalNoise view
    assert torch.allclose(
        target, s.to(dtype).reshape(3, 1, 1, 1) * ep.at(x0, t).color(eps), atol=tol
    )
    assert torch.equal(target[0], torch.zeros_like(target[0]))  # t = 0: clean
    assert torch.equal(x0, x0_copy) and torch.equal(eps, eps_copy)


def test_float32_matches_float64():
    x0 = images(seed=6)
    ep = EdgePreservingNoise(SCHED)
    s64, s32 = ep.sigma(x0, 123), ep.sigma(x0.float(), 123)
    assert torch.allclose(s32.double(), s64, rtol=1e-5, atol=1e-7)


def test_per_element_time():
    x0 = images((2, 3, 8, 8), seed=7)
    ep = EdgePreservingNoise(SCHED)
    t_map = torch.full((2, 1, 8, 8), 100.0)
    t_map[:, :, :, 4:] = 400.0
    sig = ep.sigma(x0, t_map)
    assert torch.allclose(sig[..., :4], ep.sigma(x0, 100)[..., :4])
    assert torch.allclose(sig[..., 4:], ep.sigma(x0, 400)[..., 4:])


def test_bad_inputs():
    x0 = images()
    ep = EdgePreservingNoise(SCHED)
    with pytest.raises(ValueError, match="outside the allowed range"):
        ep.sigma(x0, 1001)
    with pytest.raises(ValueError, match="outside the allowed range"):
        ep.lam(-1)
    with pytest.raises(ValueError, match="does not fit"):
        ep.sigma(x0, torch.zeros(5))
    with pytest.raises(ValueError, match="eps"):
        ep.forward(x0, 10, torch.zeros(3, 3, 16, 15))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        ep.sigma(torch.zeros(2, 1, 1, 4, 4), 1)
    for lo, hi in [(0.0, 1e-1), (-1e-4, 1e-1), (0.2, 0.1), (float("nan"), 1.0)]:
        with pytest.raises(ValueError, match="lambda_min"):
            EdgePreservingNoise(SCHED, lambda_min=lo, lambda_max=hi)
    with pytest.raises(ValueError, match="tau"):
        EdgePreservingNoise(SCHED, tau=lambda u: 2 * torch.ones_like(u)).sigma(x0, 10)
    with pytest.raises(ValueError, match="edge map"):
        EdgePreservingNoise(SCHED, edges=lambda x: x[:, :1, :4]).sigma(x0, 10)
    with pytest.raises(ValueError, match="Schedule"):
        EdgePreservingNoise("linear")


def test_gradients_are_finite_on_flat_regions():
    x0 = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    x0[..., 3:] = 1.0
    x0.requires_grad_(True)
    EdgePreservingNoise(SCHED).sigma(x0, 100).sum().backward()
    assert bool(torch.isfinite(x0.grad).all())


# ----------------------------------------------------------------------------- shared edge map
def test_sigma_from_edges_matches_sigma():
    x0 = images(seed=8)
    ep = EdgePreservingNoise(SCHED, tau=CosineTau(0.5))
    G = ep.edge_map(x0)
    assert G.dtype == torch.float64 and G.shape == (3, 1, 16, 16)
    for t in [0, 7, 240, 600, torch.tensor([3.0, 90.0, 1000.0])]:
        assert torch.equal(ep.sigma_from_edges(G, t), ep.sigma(x0, t))
        assert torch.equal(ep.relative_std_from_edges(G, t), ep.relative_std(x0, t))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bracket_is_exactly_one_on_flat_pixels_and_at_tau_one(dtype):
    G = SobelEdges()(images(seed=9, dtype=dtype))
    G[:, :, :4] = 0.0
    lam = torch.tensor(1e-3, dtype=torch.float64)
    B = EdgePreservingNoise.bracket(G, lam, torch.tensor(0.3, dtype=torch.float64))
    assert B.dtype == dtype and torch.equal(B[:, :, :4], torch.ones_like(B[:, :, :4]))
    assert bool((B[G > 0] > 1).all())
    B1 = EdgePreservingNoise.bracket(G, lam, torch.tensor(1.0, dtype=torch.float64))
    assert torch.equal(B1, torch.ones_like(B1))
    # per-batch time terms (tensors) give the same as scalars
    tau = torch.tensor([0.3, 0.3, 0.3], dtype=torch.float64).reshape(3, 1, 1, 1)
    Bb = EdgePreservingNoise.bracket(G, lam.expand(3).reshape(3, 1, 1, 1), tau)
    assert torch.allclose(Bb, B, rtol=1e-6 if dtype == torch.float32 else 1e-14, atol=0)


def test_float32_maps_are_computed_in_float32():
    x0 = images(seed=10, dtype=torch.float32)
    ep = EdgePreservingNoise(SCHED)
    assert ep.edge_map(x0).dtype == torch.float32
    assert ep.edge_map(x0.half()).dtype == torch.float32  # half is promoted
    assert ep.sigma(x0.half(), 100).dtype == torch.float16


def test_custom_edge_maps_are_value_checked():
    x0 = images()
    with pytest.raises(ValueError, match=">= 0"):
        EdgePreservingNoise(SCHED, edges=lambda x: -SobelEdges()(x)).sigma(x0, 10)
    with pytest.raises(ValueError, match="non-finite"):
        EdgePreservingNoise(SCHED, edges=lambda x: SobelEdges()(x) / 0).sigma(x0, 10)
