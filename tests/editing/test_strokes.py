"""Stroke-guided editing (EP paper, SDEdit from stroke paintings): the library function is SDEdit
of the painting — given, or k-means-made from the image — for isotropic and edge-preserving
models, and ``nidiff bench edge`` runs it (one implementation)."""

import pytest
import torch

from nidiff.bench._strokes import stroke_sdedit
from nidiff.bundled import ASSETS, load_bundled
from nidiff.data.folder import load_image
from nidiff.editing import sdedit
from nidiff.editing.strokes import stroke_edit, stroke_painting
from nidiff.schedule import own_grid

IMAGES = [ASSETS / "examples" / f"{name}.png" for name in ("shirt-0", "sneaker-1")]


@pytest.fixture(scope="module")
def images():
    return torch.stack([load_image(p, 28, 1) for p in IMAGES])


@pytest.fixture(scope="module", params=["fashion-isotropic", "fashion-edge"])
def model(request):
    return load_bundled(request.param)


def _grid(m, steps=10):
    return own_grid(m.schedule, steps)


def test_a_given_painting_is_sdedit_of_it(model, images):
    painting = stroke_painting(images, 4, generator=torch.Generator().manual_seed(0))
    kw = {"strength": 0.55, "cond": torch.tensor([6, 7])}
    got = stroke_edit(model.denoiser, painting, model.process, _grid(model),
                      generator=torch.Generator().manual_seed(3), **kw)  # fmt: skip
    want = sdedit(model.denoiser, painting, model.process, _grid(model),
                  generator=torch.Generator().manual_seed(3), **kw)  # fmt: skip
    assert torch.equal(got.x0, want.x0) and got.nfe == want.nfe
    assert got.info["method"] == "strokes" and got.info["clusters"] == 0
    assert got.info["blur"] is None and got.info["t_start"] == want.info["t_start"]


def test_clusters_paint_the_image_first(model, images):
    kw = {"strength": 0.4, "cond": torch.tensor([0, 9])}
    gen = torch.Generator().manual_seed(2)
    got = stroke_edit(model.denoiser, images, model.process, _grid(model), clusters=3, blur=0.5,
                      painting_seed=11, generator=gen, **kw)  # fmt: skip
    painting = stroke_painting(images, 3, blur=0.5, generator=torch.Generator().manual_seed(11))
    assert all(len(torch.unique(p)) <= 3 for p in painting)
    want = sdedit(model.denoiser, painting, model.process, _grid(model),
                  generator=torch.Generator().manual_seed(2), **kw)  # fmt: skip
    assert torch.equal(got.x0, want.x0)
    assert (got.info["clusters"], got.info["blur"], got.info["painting_seed"]) == (3, 0.5, 11)


def test_the_edge_benchmark_runs_the_library_function(model, images):
    painting = stroke_painting(images, 4, generator=torch.Generator().manual_seed(0))
    y, grid = torch.tensor([6, 7]), _grid(model, 8)
    bench = stroke_sdedit(model, painting, y, grid, 0.55, 5, "cpu", batch=1)
    for i in range(2):  # batch i draws from seed 5 + i
        one = stroke_edit(model.denoiser, painting[i : i + 1], model.process, grid,
                          strength=0.55, cond=y[i : i + 1],
                          generator=torch.Generator().manual_seed(5 + i))  # fmt: skip
        assert torch.equal(bench[i : i + 1], one.x0.clamp(-1, 1))


def test_bad_arguments_are_refused(images):
    m = load_bundled("fashion-isotropic")
    for clusters in (-1, 1.5, True):
        with pytest.raises(ValueError, match="clusters"):
            stroke_edit(m.denoiser, images, m.process, _grid(m), strength=0.5, clusters=clusters)
    with pytest.raises(ValueError, match="blur"):
        stroke_edit(m.denoiser, images, m.process, _grid(m), strength=0.5, clusters=2, blur=-1)
