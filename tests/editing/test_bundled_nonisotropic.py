"""Item 7 on the trained models: EF inversion, regeneration and NGDM on the bundled GFF and
edge-preserving Fashion-MNIST models (their own processes; maps in whitened space)."""

import pytest
import torch

from nidiff.bundled import ASSETS, load_bundled
from nidiff.data.folder import load_image
from nidiff.editing import lam_from_map, ngdm, weighting_map
from nidiff.inversion import edit_friendly_invert, edit_friendly_regenerate
from nidiff.schedule import leading_grid


@pytest.fixture(scope="module", params=["fashion-gff", "fashion-edge"])
def bundled(request):
    return load_bundled(request.param)


@pytest.fixture(scope="module")
def sneaker():
    return load_image(ASSETS / "examples" / "sneaker-0.png", size=28, channels=1)[None]


def test_edit_friendly_reconstruction_is_exact(bundled, sneaker):
    m, grid = bundled, leading_grid(bundled.schedule, 6)
    src, null = torch.tensor([7]), bundled.denoiser.null_cond()
    g = torch.Generator().manual_seed(0)
    inv = edit_friendly_invert(
        m.denoiser, sneaker, m.process, grid, cond=src, guidance=2.0, null_cond=null, generator=g
    )
    assert len(inv.zs) == len(grid)
    rec = edit_friendly_regenerate(m.denoiser, inv, m.process, null_cond=null).x0
    err = float((rec - sneaker).norm() / sneaker.norm())
    assert err <= 1e-5, f"{m.spec.kind}: relative reconstruction error {err:.2e}"
    edit = edit_friendly_regenerate(
        m.denoiser, inv, m.process, cond=torch.tensor([5]), guidance=3.0, null_cond=null, skip=2
    ).x0
    assert float((edit - sneaker).abs().mean()) > 1e-3  # the new class changes the image


def test_ngdm_keeps_zero_lambda_pixels_and_edits_the_rest(bundled, sneaker):
    m, grid = bundled, leading_grid(bundled.schedule, 6)
    g = torch.Generator().manual_seed(1)
    wm = weighting_map(
        m.denoiser,
        sneaker,
        m.process,
        source_cond=torch.tensor([7]),
        target_cond=torch.tensor([5]),
        n=2,
        generator=g,
    )
    lam = lam_from_map(wm.A)
    lam = torch.where(lam < 0.5, torch.zeros_like(lam), lam)
    out = ngdm(
        m.denoiser,
        sneaker,
        m.process,
        grid,
        lam,
        cond=torch.tensor([5]),
        guidance=3.0,
        null_cond=m.denoiser.null_cond(),
        generator=g,
    ).x0
    keep = (lam == 0).expand_as(sneaker)
    assert torch.equal(out[keep], sneaker[keep])
    assert float((out - sneaker)[~keep].abs().mean()) > 1e-2
