"""NGDM weighting map (Sec. 3.4): region recovery on analytic models, batching, smoothing."""

from __future__ import annotations

import math

import pytest
import torch
from gaussian_fields import smooth_covariance

from nidiff.editing import WeightMap, gaussian_blur, lam_from_map, weighting_map
from nidiff.models import GaussianDenoiser
from nidiff.noise import GFFNoise
from nidiff.process import Process
from nidiff.schedule import DiscreteSchedule

SCHED = DiscreteSchedule.linear(1000)
PROC = Process(SCHED)
H = W = 8
SQUARE = (slice(2, 6), slice(3, 7))  # rows 2..5, cols 3..6


class TwoClass:
    """A conditional analytic model: label 0 → N(mu0, C), label 1 → N(mu1, C), label 2 → mean."""

    def __init__(self, mu0: torch.Tensor, mu1: torch.Tensor, scale1: float = 0.2, noise=None):
        mus, scales = (mu0, mu1, 0.5 * (mu0 + mu1)), (0.2, scale1, 0.2)
        self.dens = [
            GaussianDenoiser(m, smooth_covariance(H, scale=s, nugget=0.02), SCHED, noise)
            for m, s in zip(mus, scales, strict=True)
        ]
        self.calls = 0

    def __call__(self, x_t, t, cond=None):
        self.calls += 1
        outs = torch.stack([d(x_t, t) for d in self.dens])  # (3, B, ...)
        idx = cond.long().reshape(1, -1, *[1] * (x_t.ndim - 1)).expand(1, *x_t.shape)
        return outs.gather(0, idx)[0]


def _means(delta: float = 1.5):
    mu0 = torch.zeros(1, H, W, dtype=torch.float64)
    mu1 = mu0.clone()
    mu1[0][SQUARE] += delta
    return mu0, mu1


def _image(B: int = 2, seed: int = 0) -> torch.Tensor:
    return 0.3 * torch.randn(B, 1, H, W, generator=torch.Generator().manual_seed(seed))


def _run(model, x0, seed=0, proc=PROC, **kw):
    B = x0.shape[0]
    return weighting_map(
        model,
        x0,
        proc,
        source_cond=torch.zeros(B, dtype=torch.long),
        target_cond=torch.ones(B, dtype=torch.long),
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )


def test_map_recovers_the_region_where_conditions_differ():
    model, x0 = TwoClass(*_means()), _image()
    wm = _run(model, x0, n=6)
    assert isinstance(wm, WeightMap) and wm.t == 500.0
    truth = torch.zeros(H, W, dtype=torch.bool)
    truth[SQUARE] = True
    for b in range(x0.shape[0]):
        found = wm.A[b, 0] > 0.5
        iou = (found & truth).sum() / (found | truth).sum()
        assert iou > 0.8, f"image {b}: IoU {float(iou):.2f}"
    # λ is high inside and low outside
    assert float(wm.lam[:, 0][:, truth].mean()) > 0.7 > 0.2 > float(wm.lam[:, 0][:, ~truth].mean())


def test_gff_map_compares_coloured_noise_and_recovers_the_region():
    proc = Process(SCHED, GFFNoise())
    model, x0 = TwoClass(*_means(), noise=GFFNoise()), _image()
    wm = _run(model, x0, n=6, proc=proc)
    truth = torch.zeros(H, W, dtype=torch.bool)
    truth[SQUARE] = True
    for b in range(x0.shape[0]):
        found = wm.A[b, 0] > 0.5
        iou = (found & truth).sum() / (found | truth).sum()
        assert iou > 0.8, f"image {b}: IoU {float(iou):.2f}"
    # D is the mean |Σ^{1/2}(ε̂_R − ε̂_Q)| over draws, not the white difference
    one = _run(model, x0[:1], n=1, proc=proc, seed=5)
    z = torch.randn(x0[:1].shape, generator=torch.Generator().manual_seed(5))
    x_t, t = proc.q_sample(x0[:1], 500.0, z), torch.tensor(500.0)
    white = model(x_t, t, torch.zeros(1)) - model(x_t, t, torch.ones(1))
    torch.testing.assert_close(one.diff, proc.noise.color(white).abs(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(one.diff, white.abs(), rtol=0.1, atol=0)


def test_shapes_ranges_and_lam_sigmoid():
    model, x0 = TwoClass(*_means()), _image(3)
    wm = _run(model, x0, n=2, sigma=0.0)
    for m in (wm.A, wm.diff, wm.lam):
        assert m.shape == (3, 1, H, W) and m.dtype == x0.dtype
    assert float(wm.A.min()) == 0.0 and float(wm.A.amax(dim=(1, 2, 3)).min()) == 1.0
    assert bool((wm.diff >= 0).all())
    torch.testing.assert_close(wm.lam, torch.sigmoid(10 * wm.A - 5))
    torch.testing.assert_close(lam_from_map(wm.A, 4.0, 1.0), torch.sigmoid(4 * wm.A - 1))
    # sigma = 0, no clamp: A is exactly the min-max normalised raw map
    d = wm.diff.flatten(1)
    ref = (d - d.min(1, keepdim=True).values) / (
        d.max(1, keepdim=True).values - d.min(1, True).values
    )
    torch.testing.assert_close(wm.A, ref.reshape(wm.A.shape))


def test_batching_gives_the_same_map_and_counts_calls():
    x0 = _image(2)
    one = TwoClass(*_means())
    full = _run(one, x0, n=3)
    assert full.nfe == 1 and one.calls == 1
    chunked_model = TwoClass(*_means())
    chunked = _run(chunked_model, x0, n=3, batch=1)
    assert chunked.nfe == 2 * 3 * 2 == chunked_model.calls
    torch.testing.assert_close(chunked.A, full.A, rtol=0, atol=1e-6)
    torch.testing.assert_close(chunked.diff, full.diff, rtol=0, atol=1e-6)
    assert _run(TwoClass(*_means()), x0, n=3, batch=5).nfe == 3


def test_seeded_determinism_and_fresh_noise_per_draw():
    # different covariances: ε_R − ε_Q depends on x_t (with equal ones it would be constant)
    model, x0 = TwoClass(*_means(), scale1=0.5), _image(1)
    a, b = _run(model, x0, seed=3, n=2), _run(model, x0, seed=3, n=2)
    assert torch.equal(a.A, b.A) and torch.equal(a.diff, b.diff)
    assert not torch.equal(_run(model, x0, seed=4, n=2).diff, a.diff)
    # averaging over n draws: the n = 2 map is the mean of two n = 1 maps with those draws
    gen = torch.Generator().manual_seed(3)
    z = [torch.randn(x0.shape, generator=gen) for _ in range(2)]
    maps = []
    for zi in z:
        x_t = PROC.q_sample(x0, 500.0, zi)
        e0 = model(x_t, torch.tensor(500.0), torch.zeros(1))
        e1 = model(x_t, torch.tensor(500.0), torch.ones(1))
        maps.append((e0 - e1).abs())
    torch.testing.assert_close(a.diff, 0.5 * (maps[0] + maps[1]), rtol=1e-6, atol=1e-7)


def test_identical_conditions_give_a_zero_map_not_nan():
    mu0, _ = _means()
    wm = _run(TwoClass(mu0, mu0), _image(2), n=2)
    assert torch.equal(wm.A, torch.zeros_like(wm.A))
    assert bool(torch.isfinite(wm.lam).all())


def test_clamp_flattens_the_peak_and_guidance_runs():
    model, x0 = TwoClass(*_means()), _image(1)
    plain, clamped = _run(model, x0, n=2), _run(model, x0, n=2, clamp=1.5)
    assert int((clamped.A == 1).sum()) > int((plain.A == 1).sum())
    guided = _run(model, x0, n=2, guidance=3.0, null_cond=torch.tensor([2]))
    assert bool(torch.isfinite(guided.A).all()) and not torch.equal(guided.diff, plain.diff)


def test_gaussian_blur_properties():
    x = torch.randn(2, 3, 9, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert gaussian_blur(x, 0.0) is x
    const = torch.full((1, 1, 5, 6), 2.5)
    torch.testing.assert_close(gaussian_blur(const, 1.3), const)
    impulse = torch.zeros(1, 1, 11, 11, dtype=torch.float64)
    impulse[0, 0, 5, 5] = 1
    blurred = gaussian_blur(impulse, 1.0)
    torch.testing.assert_close(blurred.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(blurred, blurred.transpose(-1, -2))  # isotropic, separable
    r = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-0.5 * r**2)
    g[(r.abs() > 3)] = 0
    g = g / g.sum()
    torch.testing.assert_close(blurred[0, 0], g[:, None] * g[None, :])
    assert gaussian_blur(torch.ones(1, 1, 1, 4), 5.0).shape == (1, 1, 1, 4)  # tiny axes are fine


def test_input_is_not_mutated():
    x0 = _image(1)
    before = x0.clone()
    _run(TwoClass(*_means()), x0, n=1)
    assert torch.equal(x0, before)


@pytest.mark.parametrize(
    ("kw", "word"),
    [
        ({"strength": 0.0}, "strength"),
        ({"strength": 1.5}, "strength"),
        ({"n": 0}, "n="),
        ({"n": 2.5}, "n="),
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": math.nan}, "sigma"),
        ({"clamp": 0.0}, "clamp"),
        ({"batch": 0}, "batch"),
        ({"guidance": 2.0}, "null_cond"),
        ({"guidance": -1.0}, "guidance"),
    ],
)
def test_bad_parameters_raise(kw, word):
    with pytest.raises(ValueError, match=word):
        _run(TwoClass(*_means()), _image(1), **kw)


def test_bad_images_raise():
    model = TwoClass(*_means())
    bad = _image(1)
    bad[0, 0, 1, 1] = math.nan
    with pytest.raises(ValueError, match="non-finite"):
        _run(model, bad)
    with pytest.raises(ValueError, match="x0"):
        _run(model, torch.zeros(1, 8))
    with pytest.raises(ValueError, match="A"):
        lam_from_map(torch.tensor([[math.inf]]))
