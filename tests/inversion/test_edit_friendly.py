"""Edit-friendly DDPM inversion (EF Alg. 1): exact reconstruction, determinism, edits, errors."""

from __future__ import annotations

import math

import pytest
import torch

from nidiff.inversion import Inversion, edit_friendly_invert, edit_friendly_regenerate
from nidiff.models import EmpiricalDenoiser, GaussianDenoiser
from nidiff.noise import EdgePreservingNoise, GFFNoise, IsotropicNoise, dense_covariance
from nidiff.process import Process
from nidiff.schedule import DiscreteSchedule, TimeGrid, leading_grid

SCHED = DiscreteSchedule.linear(1000)
DIMS = (1, 8, 8)
D = math.prod(DIMS)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def image_model(noise) -> GaussianDenoiser:
    """Gaussian images with a smooth stationary covariance (GFF spectrum) plus a nugget."""
    cov = 0.5 * dense_covariance(GFFNoise(1.0), DIMS) + 0.1 * torch.eye(D, dtype=torch.float64)
    return GaussianDenoiser(torch.full(DIMS, 0.3), cov, SCHED, noise)


class TwoClass:
    """Class-conditional 2-D Gaussians: class 0 round around -1, class 1 elongated around +1,
    label 2 the null class. The covariances differ, so an edit (class 0 -> 1) is not just a
    shift of x0 and depends on the maps (for equal covariances the whole chain is affine and
    every inversion gives the same edit, x0 + const)."""

    def __init__(self):
        covs = [torch.diag(torch.tensor(v, dtype=torch.float64)) for v in ([0.3, 0.3], [2, 0.05])]
        covs.append(torch.eye(2, dtype=torch.float64))
        means = (-1.0, 1.0, 0.0)
        self.models = [
            GaussianDenoiser(torch.full((2,), m), c, SCHED)
            for m, c in zip(means, covs, strict=True)
        ]

    def __call__(self, x, t, cond):
        outs = torch.stack([m(x, t) for m in self.models])  # (3, B, 2)
        return outs[cond.long(), torch.arange(x.shape[0])]


def invert_images(noise, eta=1.0, steps=20, seed=0):
    model, process = image_model(noise), Process(SCHED, noise)
    x0 = 0.3 + torch.randn(3, *DIMS, generator=gen(seed + 100))
    inv = edit_friendly_invert(
        model, x0, process, leading_grid(SCHED, steps), eta=eta, generator=gen(seed)
    )
    return model, process, x0, inv


@pytest.mark.parametrize("eta", [1.0, 0.5])
@pytest.mark.parametrize("kind", ["iso", "gff"])
def test_regeneration_reproduces_x0(kind, eta):
    noise = IsotropicNoise() if kind == "iso" else GFFNoise(1.0)
    model, process, x0, inv = invert_images(noise, eta)
    out = edit_friendly_regenerate(model, inv, process)
    err = rel(out.x0, x0)
    assert err <= 1e-5, f"{kind}, eta={eta}: relative reconstruction error {err:.2e}"
    assert out.nfe == len(inv.grid) == len(inv.zs) == len(inv.xs) == 20
    assert all(z.shape == x0.shape and z.dtype == x0.dtype for z in inv.zs)
    assert inv.xs[0] is inv.x_T and torch.equal(inv.x0, x0)


def test_edge_preserving_reconstruction_is_exact():
    ep = EdgePreservingNoise(SCHED)
    data = torch.rand(12, *DIMS, generator=gen(1))
    model, process = EmpiricalDenoiser(data, SCHED, ep), Process(SCHED, ep)
    x0 = data[:2] + 0.05 * torch.randn(2, *DIMS, generator=gen(2))
    inv = edit_friendly_invert(model, x0, process, leading_grid(SCHED, 15), generator=gen(3))
    err = rel(edit_friendly_regenerate(model, inv, process).x0, x0)
    assert err <= 1e-5, f"edge-preserving relative reconstruction error {err:.2e}"
    with pytest.raises(ValueError, match="eta"):
        edit_friendly_invert(model, x0, process, leading_grid(SCHED, 15), eta=0.5, generator=gen(3))


def test_skip_starts_from_the_inverted_state():
    model, process, x0, inv = invert_images(IsotropicNoise())
    for skip in (1, 7, 19):
        out = edit_friendly_regenerate(model, inv, process, skip=skip)
        assert out.nfe == 20 - skip and out.info["skip"] == skip
        assert rel(out.x0, x0) <= 1e-5


def test_bitwise_determinism_and_explicit_noise():
    model, process, x0, a = invert_images(IsotropicNoise(), seed=5)
    b = invert_images(IsotropicNoise(), seed=5)[3]
    assert torch.equal(a.x_T, b.x_T) and all(map(torch.equal, a.zs, b.zs))
    g = gen(5)
    eps = [torch.randn(x0.shape, generator=g) for _ in range(20)]  # the documented draw order
    c = edit_friendly_invert(model, x0, process, a.grid, noise=eps)
    assert torch.equal(a.x_T, c.x_T) and all(map(torch.equal, a.zs, c.zs))


def test_other_seed_gives_other_maps_and_other_edits():
    model, process = TwoClass(), Process(SCHED)
    x0 = -1 + 0.5 * torch.randn(4, 2, generator=gen(0))
    cond, target = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    grid = leading_grid(SCHED, 30)
    invs = [
        edit_friendly_invert(model, x0, process, grid, cond=cond, generator=gen(s)) for s in (1, 2)
    ]
    for inv in invs:
        assert rel(edit_friendly_regenerate(model, inv, process).x0, x0) <= 1e-5
    gap = min((za - zb).abs().max().item() for za, zb in zip(invs[0].zs, invs[1].zs, strict=True))
    assert gap > 1e-3, f"maps of two seeds nearly equal (min max-diff {gap:.2e})"
    edits = [edit_friendly_regenerate(model, inv, process, cond=target, skip=10).x0 for inv in invs]
    diff = (edits[0] - edits[1]).norm(dim=1).min().item()
    assert diff > 1e-2, f"two inversions gave the same edit (min distance {diff:.2e})"
    assert (edits[0].mean() - x0.mean()).item() > 0.5  # the class edit moves towards +1


def test_guidance_reconstruction_and_null_cond_required():
    model, process = TwoClass(), Process(SCHED)
    x0 = torch.randn(3, 2, generator=gen(0))
    cond, null = torch.tensor([0, 1, 0]), torch.tensor([2])
    grid = leading_grid(SCHED, 25)
    inv = edit_friendly_invert(
        model, x0, process, grid, cond=cond, guidance=3.0, null_cond=null, generator=gen(1)
    )
    out = edit_friendly_regenerate(model, inv, process, null_cond=null)
    assert rel(out.x0, x0) <= 1e-5 and out.info["guidance"] == 3.0
    with pytest.raises(ValueError, match="null_cond"):
        edit_friendly_regenerate(model, inv, process)
    with pytest.raises(ValueError, match="null_cond"):
        edit_friendly_invert(model, x0, process, grid, cond=cond, guidance=2.0, generator=gen(1))


def test_zero_last_is_the_deterministic_last_step():
    model, process, x0, _ = invert_images(IsotropicNoise())
    inv = edit_friendly_invert(
        model, x0, process, leading_grid(SCHED, 20), generator=gen(0), zero_last=True
    )
    assert not inv.zs[-1].any() and inv.zero_last
    out = edit_friendly_regenerate(model, inv, process).x0
    x1 = inv.xs[-1]  # the state at t = 1; the last step returns x̂0(x_1)
    expected = model.x0_hat(x1, 1.0)
    assert torch.allclose(out, expected, atol=1e-5), (out - expected).abs().max()
    err = rel(out, x0)
    assert 1e-5 < err < 0.05, f"zero_last reconstruction error {err:.2e}"


def test_inputs_are_not_modified():
    model, process = TwoClass(), Process(SCHED)
    x0, cond = torch.randn(2, 2, generator=gen(0)), torch.tensor([0, 1])
    x0_c, cond_c = x0.clone(), cond.clone()
    inv = edit_friendly_invert(
        model, x0, process, leading_grid(SCHED, 10), cond=cond, generator=gen(1)
    )
    zs = [z.clone() for z in inv.zs]
    edit_friendly_regenerate(model, inv, process, cond=torch.tensor([1, 1]))
    assert torch.equal(x0, x0_c) and torch.equal(cond, cond_c)
    assert all(map(torch.equal, zs, inv.zs))


def test_bad_inputs_raise():
    model, process, x0, inv = invert_images(IsotropicNoise(), steps=10)
    grid = inv.grid
    with pytest.raises(ValueError, match="skip=10 must be < steps=10"):
        edit_friendly_regenerate(model, inv, process, skip=10)
    for skip in (-1, 2.5):
        with pytest.raises(ValueError, match="skip"):
            edit_friendly_regenerate(model, inv, process, skip=skip)
    for eta in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="eta"):
            edit_friendly_invert(model, x0, process, grid, eta=eta, generator=gen(0))
    bad = x0.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x0"):
        edit_friendly_invert(model, bad, process, grid, generator=gen(0))
    with pytest.raises(ValueError, match="batch"):
        edit_friendly_invert(model, x0, process, grid, cond=torch.zeros(2), generator=gen(0))
    with pytest.raises(ValueError, match="batch"):
        edit_friendly_regenerate(model, inv, process, cond=torch.zeros(5))
    with pytest.raises(ValueError, match=r"zs\[3\]"):
        zs = list(inv.zs)
        zs[3] = zs[3][:, :, :4]
        edit_friendly_regenerate(model, inv, process, zs=zs)
    with pytest.raises(ValueError, match="9 maps"):
        edit_friendly_regenerate(model, inv, process, zs=inv.zs[:-1])
    with pytest.raises(ValueError, match="x_T"):
        edit_friendly_regenerate(model, inv, process, x_T=inv.x_T, skip=2)
    with pytest.raises(ValueError, match="generator"):
        edit_friendly_invert(model, x0, process, grid)
    with pytest.raises(ValueError, match=r"noise\[1\]"):
        edit_friendly_invert(model, x0, process, grid, noise=[x0, x0[:1], *[x0] * 8])
    with pytest.raises(ValueError, match="t = 0"):
        edit_friendly_invert(
            model, x0, process, TimeGrid(grid.t[:-1], grid.t_prev[:-1]), generator=gen(0)
        )
    with pytest.raises(ValueError, match="different process"):
        edit_friendly_regenerate(model, inv, Process(SCHED, GFFNoise(1.0)))


def test_tiny_unet_reconstruction_with_and_without_guidance():
    diffusers = pytest.importorskip("diffusers")
    from nidiff.models.diffusers_unet import UNetDenoiser

    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = diffusers.UNet2DModel(
            sample_size=8,
            in_channels=1,
            out_channels=1,
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            norm_num_groups=8,
            num_class_embeds=3,
        ).eval()
    model, process = UNetDenoiser(unet), Process(SCHED)
    x0 = torch.rand(2, 1, 8, 8, generator=gen(0)) * 2 - 1
    cond, grid = torch.tensor([0, 1]), leading_grid(SCHED, 12)
    for w in (1.0, 2.0):
        inv = edit_friendly_invert(
            model,
            x0,
            process,
            grid,
            cond=cond,
            guidance=w,
            null_cond=model.null_cond(),
            generator=gen(1),
        )
        out = edit_friendly_regenerate(model, inv, process, null_cond=model.null_cond())
        err = rel(out.x0, x0)
        assert err <= 1e-5, f"UNet, guidance {w}: relative reconstruction error {err:.2e}"
        edit = edit_friendly_regenerate(
            model, inv, process, cond=torch.tensor([1, 0]), null_cond=model.null_cond(), skip=3
        )
        assert torch.isfinite(edit.x0).all() and rel(edit.x0, x0) > 1e-4


def test_inversion_record_validates_itself():
    _, _, _, inv = invert_images(IsotropicNoise(), steps=5)
    with pytest.raises(ValueError, match="guidance"):
        Inversion(**{**inv.__dict__, "guidance": -1.0})
    with pytest.raises(ValueError, match="x0"):
        Inversion(**{**inv.__dict__, "x0": inv.x0[:1]})
