"""The ModelSpace contract: nidiff's pixel models and Stable Diffusion pipelines expose the same
encode / decode / condition / null_cond / grid, so a library user runs any method on either."""

from __future__ import annotations

import pytest
import torch

from nidiff.bundled import load_bundled
from nidiff.editing import sdedit
from nidiff.models.space import ModelSpace, PixelSpace, class_labels


@pytest.fixture(scope="module")
def pixel() -> PixelSpace:
    return PixelSpace(load_bundled())


@pytest.fixture(scope="module")
def latent(tmp_path_factory):
    import tiny_sd

    return tiny_sd.build_tiny_sd(tmp_path_factory.mktemp("space"))


def test_both_kinds_are_model_spaces(pixel, latent):
    assert isinstance(pixel, ModelSpace) and isinstance(latent, ModelSpace)
    assert pixel.factor == 1 and latent.factor == 2


def test_pixel_space(pixel):
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    assert torch.equal(pixel.decode(pixel.encode(x)), x)
    assert [int(c) for c in pixel.condition(["sneaker", "Sandal", 3])] == [7, 5, 3]
    assert pixel.condition([None]) == [None] and int(pixel.null_cond()) == 10
    assert pixel.grid(10).t[0] == 901.0  # leading spacing, no offset
    with pytest.raises(ValueError, match="do not fit"):
        pixel.encode(torch.zeros(1, 3, 28, 28))
    with pytest.raises(ValueError, match="unknown Fashion-MNIST class"):
        pixel.condition(["giraffe"])


def test_latent_space_and_one_edit_on_both(pixel, latent):
    img = torch.rand(1, 3, 32, 32) * 2 - 1
    z = latent.encode(img)
    assert z.shape == (1, 4, 16, 16) and latent.decode(z).shape == (1, 3, 32, 32)
    src, none = latent.condition(["a photo of a cat", None])
    assert src.shape[0] == 1 and none is None
    assert latent.grid(10).t[0] == 902.0  # steps_offset = 1: diffusers timestep 901
    for space, x0, name in ((pixel, torch.zeros(1, 1, 28, 28), "sandal"), (latent, z, "a dog")):
        (cond,) = space.condition([name])
        res = sdedit(
            space.denoiser, x0, space.process, space.grid(6), strength=0.5, cond=cond,
            guidance=2.0, null_cond=space.null_cond(), generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        assert res.x0.shape == x0.shape and bool(torch.isfinite(space.decode(res.x0)).all())


def test_class_labels_for_other_class_sets():
    assert [int(c) for c in class_labels(["cat", "Big Dog"], 2, ["big-dog", "0"])] == [1, 0]
    with pytest.raises(ValueError, match="unconditional"):
        class_labels([], 0, ["cat"])
    assert class_labels([], 0, [None]) == [None]
