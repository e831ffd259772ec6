"""scikit-learn digits: shapes, range, labels, padding."""

from __future__ import annotations

import pytest
import torch

from nidiff.data import digits, fit_size, from_uint8, to_uint8


def test_native_digits():
    images, labels = digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (1797,) and labels.dtype == torch.int64
    assert images.min() == -1 and images.max() == 1
    assert sorted(labels.unique().tolist()) == list(range(10))


@pytest.mark.parametrize("fit", ["pad", "resize"])
def test_sixteen(fit):
    images, _ = digits(size=16, fit=fit)
    assert images.shape == (1797, 1, 16, 16)
    assert images.min() >= -1 and images.max() <= 1
    if fit == "pad":
        torch.testing.assert_close(images[:, :, 4:12, 4:12], digits()[0])
        assert (images[:, :, :4] == -1).all()


def test_fit_size_errors_and_uint8_round_trip():
    with pytest.raises(ValueError, match="resize"):
        fit_size(torch.zeros(1, 8, 8), 4, "pad")
    with pytest.raises(ValueError, match="fit"):
        fit_size(torch.zeros(1, 8, 8), 4, "crop")  # type: ignore[arg-type]
    u = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(from_uint8(u)), u)
