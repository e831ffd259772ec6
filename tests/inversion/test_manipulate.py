"""EF Sec. 5 manipulations: shifting/flipping the latent code, border fill, colour edits."""

from __future__ import annotations

import math

import pytest
import torch

from nidiff.inversion import (
    color_edit,
    edit_friendly_invert,
    edit_friendly_regenerate,
    flip_maps,
    shift_maps,
)
from nidiff.models import GaussianDenoiser
from nidiff.noise import GFFNoise, IsotropicNoise, dense_covariance
from nidiff.process import Process
from nidiff.schedule import DiscreteSchedule, leading_grid

SCHED = DiscreteSchedule.linear(1000)
f64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def stationary_setup(kind: str, dims=(1, 8, 8), steps=20):
    """A model that is exactly equivariant under cyclic shifts and flips: constant mean and a
    circulant, reflection-symmetric covariance (the GFF spectrum plus a nugget), with isotropic
    or GFF (also circulant) noise. float64, so equivariance holds to ~1e-12."""
    D = math.prod(dims)
    noise = IsotropicNoise() if kind == "iso" else GFFNoise(1.0)
    cov = 0.5 * dense_covariance(GFFNoise(1.0), dims) + 0.1 * torch.eye(D, dtype=f64)
    model = GaussianDenoiser(torch.full(dims, 0.3, dtype=f64), cov, SCHED, noise)
    process = Process(SCHED, noise)
    x0 = 0.3 + torch.randn(2, *dims, generator=gen(7), dtype=f64)
    inv = edit_friendly_invert(model, x0, process, leading_grid(SCHED, steps), generator=gen(8))
    return model, process, x0, inv


@pytest.mark.parametrize("kind", ["iso", "gff"])
@pytest.mark.parametrize(("dx", "dy"), [(3, 0), (-2, 5), (0, -1)])
def test_wrap_shift_of_the_code_shifts_the_output_exactly(kind, dx, dy):
    model, process, x0, inv = stationary_setup(kind)
    maps = shift_maps([inv.x_T, *inv.zs], dx, dy)
    out = edit_friendly_regenerate(model, inv, process, x_T=maps[0], zs=maps[1:]).x0
    expected = x0.roll((dy, dx), dims=(-2, -1))
    err = (out - expected).abs().max().item()
    assert err < 1e-9, f"{kind}, shift ({dx}, {dy}): max |out - shifted x0| = {err:.2e}"


@pytest.mark.parametrize("kind", ["iso", "gff"])
@pytest.mark.parametrize("dims", [(-1,), (-2,), (-2, -1)])
def test_flipping_the_code_flips_the_output(kind, dims):
    model, process, x0, inv = stationary_setup(kind)
    maps = flip_maps([inv.x_T, *inv.zs], dims)
    out = edit_friendly_regenerate(model, inv, process, x_T=maps[0], zs=maps[1:]).x0
    err = (out - x0.flip(dims)).abs().max().item()
    assert err < 1e-9, f"{kind}, flip {dims}: max |out - flipped x0| = {err:.2e}"


def test_band_shift_output_matches_inside_the_valid_region():
    # Short-range correlations: the copied band only disturbs pixels near the border.
    dims, D = (1, 16, 16), 256
    noise = IsotropicNoise()
    model = GaussianDenoiser(torch.zeros(dims, dtype=f64), torch.eye(D, dtype=f64), SCHED, noise)
    process = Process(SCHED, noise)
    x0 = torch.randn(2, *dims, generator=gen(0), dtype=f64)
    inv = edit_friendly_invert(model, x0, process, leading_grid(SCHED, 20), generator=gen(1))
    maps = shift_maps([inv.x_T, *inv.zs], 4, fill="band")
    out = edit_friendly_regenerate(model, inv, process, x_T=maps[0], zs=maps[1:]).x0
    err = (out[..., 4:] - x0[..., :-4]).abs().max().item()
    assert err < 1e-9, f"valid region after a band-filled shift: max error {err:.2e}"


def test_fills_keep_white_maps_white():
    z = torch.randn(4000, 1, 12, 12, generator=gen(0))
    wrapped = shift_maps([z], 3, -2)[0]
    assert torch.equal(wrapped.flatten(1).sort(1).values, z.flatten(1).sort(1).values)
    banded = shift_maps([z], 3, -2, fill="band")[0]
    # columns 0..2 copied from the original's centred band 4..6 (50 does not fit in 12)
    assert torch.equal(banded[..., :-2, :3], z[..., 4:7].roll(-2, dims=-2)[..., :-2, :])
    assert torch.equal(banded[..., :-2, 3:], z[..., 2:, :-3])
    for region in (banded[..., :3], banded[..., -2:, :]):
        m, v, n = region.mean().item(), region.var().item(), region.numel()
        assert abs(m) < 5 / math.sqrt(n) and abs(v - 1) < 5 * math.sqrt(2 / n), (m, v)
    start = shift_maps([z], -2, fill="band", band_start=0)[0]
    assert torch.equal(start[..., -2:], z[..., :2]) and torch.equal(start[..., :-2], z[..., 2:])


def test_shift_and_flip_leave_inputs_alone_and_invert():
    z = torch.randn(2, 3, 6, 7, generator=gen(0))
    keep = z.clone()
    back = shift_maps(shift_maps([z], 2, -3), -2, 3)[0]
    assert torch.equal(back, z) and torch.equal(z, keep)
    assert torch.equal(flip_maps(flip_maps([z]))[0], z)


def test_bad_manipulation_arguments():
    z = torch.zeros(1, 1, 4, 6)
    with pytest.raises(ValueError, match="dx"):
        shift_maps([z], 6)
    with pytest.raises(ValueError, match="dy"):
        shift_maps([z], 0, -4)
    with pytest.raises(ValueError, match="dx"):
        shift_maps([z], 1.5)
    with pytest.raises(ValueError, match="fill"):
        shift_maps([z], 1, fill="zeros")
    with pytest.raises(ValueError, match="band_start"):
        shift_maps([z], 2, fill="band", band_start=5)
    with pytest.raises(ValueError, match="dims"):
        flip_maps([z], (4,))


def colour_setup(steps=50):
    dims = (3, 8, 8)
    cov = 0.2 * torch.eye(math.prod(dims), dtype=f64)
    model = GaussianDenoiser(torch.zeros(dims, dtype=f64), cov, SCHED)
    process = Process(SCHED)
    x0 = 0.45 * torch.randn(2, *dims, generator=gen(3), dtype=f64)
    inv = edit_friendly_invert(model, x0, process, leading_grid(SCHED, steps), generator=gen(4))
    mask = torch.zeros(1, 1, 8, 8, dtype=f64)
    mask[..., :, :4] = 1
    color = torch.tensor([1.0, -1.0, 0.5], dtype=f64).reshape(1, 3, 1, 1)
    return model, process, x0, inv, mask, color


def test_color_edit_moves_the_masked_region_toward_the_colour():
    # Independent pixels: the edit cannot leak outside the mask, which stays unchanged.
    model, process, x0, inv, mask, color = colour_setup()

    def distance(x):  # per channel, |mean over the mask - M|
        return (x[..., :4].mean(dim=(0, 2, 3)) - color.flatten()).abs()

    ratios = []
    for strength in (0.05, 0.2, 1.0):
        out = color_edit(model, inv, process, mask=mask, color=color, strength=strength)
        ratios.append((distance(out.x0) / distance(x0)).max().item())
        change_in = (out.x0 - x0)[..., :4].abs().mean().item()
        change_out = (out.x0 - x0)[..., 4:].abs().max().item()
        assert change_out < 1e-9 * change_in, f"s={strength}: outside changed by {change_out:.2e}"
    # measured 0.95, 0.81, 0.35 (default window (10, 35) of 50 steps)
    assert ratios[0] < 0.99 and ratios[1] < ratios[0] and ratios[2] < 0.5, ratios
    assert out.info["method"] == "ef_color" and out.info["window"] == [10, 35]
    assert out.nfe == 50


def test_color_edit_only_acts_in_its_window_and_zero_strength_is_reconstruction():
    model, process, x0, inv, mask, color = colour_setup()
    same = color_edit(model, inv, process, mask=mask, color=color, strength=0.0).x0
    assert ((same - x0).norm() / x0.norm()).item() <= 1e-12
    # a window ending at step number 1 still moves the image; with skip past it nothing changes
    edit = color_edit(model, inv, process, mask=mask, color=color, strength=0.5, window=(40, 50))
    assert (edit.x0 - x0).abs().max() > 1e-3
    late = color_edit(model, inv, process, mask=mask, color=color, window=(40, 50), skip=11)
    assert ((late.x0 - x0).norm() / x0.norm()).item() <= 1e-12


def test_color_edit_bad_arguments():
    model, process, _, inv, mask, color = colour_setup(steps=10)
    for window in ((0, 5), (6, 5), (3, 11), (1.0, 5)):
        with pytest.raises(ValueError, match="window"):
            color_edit(model, inv, process, mask=mask, color=color, window=window)
    with pytest.raises(ValueError, match="strength"):
        color_edit(model, inv, process, mask=mask, color=color, strength=-1.0)
    with pytest.raises(ValueError, match="mask"):
        color_edit(model, inv, process, mask=mask * 2, color=color)
    with pytest.raises(ValueError, match="color"):
        color_edit(model, inv, process, mask=mask, color=torch.zeros(2, 1, 1))
