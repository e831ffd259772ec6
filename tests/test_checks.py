"""The shared shape/value checks: the time contract of ``expand_like`` and the range checks."""

from __future__ import annotations

import math

import pytest
import torch

from nidiff._checks import as_time, broadcast_shape, check_finite, check_in_range, expand_like

B, C, H, W = 2, 3, 4, 5


@pytest.fixture
def x() -> torch.Tensor:
    return torch.zeros(B, C, H, W)


# ------------------------------------------------------------------------------ expand_like
def test_scalar_is_returned_unchanged(x):
    v = torch.tensor(0.5)
    out = expand_like(v, x)
    assert out.shape == ()
    assert out is v


def test_per_sample_is_reshaped_to_broadcast(x):
    v = torch.tensor([0.1, 0.7])
    out = expand_like(v, x)
    assert out.shape == (B, 1, 1, 1)
    torch.testing.assert_close((out * torch.ones_like(x))[:, 1, 2, 3], v)
    assert v.shape == (B,)  # a view, the caller's tensor keeps its shape


@pytest.mark.parametrize(
    "shape", [(B, 1, H, W), (B, C, H, W), (1, 1, H, W), (B, 1, 1, 1), (1, C, 1, W), (1, 1, 1, 1)]
)
def test_per_element_maps_broadcastable_to_x_are_accepted(x, shape):
    v = torch.rand(shape)
    out = expand_like(v, x)
    assert out.shape == shape
    assert torch.equal(out, v)


def test_one_dimensional_x():
    x1 = torch.zeros(4)
    assert expand_like(torch.arange(4.0), x1).shape == (4,)
    assert expand_like(torch.tensor([2.0]), x1).shape == (1,)
    with pytest.raises(ValueError, match="does not fit"):
        expand_like(torch.arange(3.0), x1)


def test_two_dimensional_x_per_sample():
    x2 = torch.zeros(B, 7)
    assert expand_like(torch.arange(float(B)), x2).shape == (B, 1)


@pytest.mark.parametrize(
    "shape",
    [
        (B + 1,),  # wrong batch
        (1,),  # a 1-d tensor must be (B,): no silent batch broadcasting of (1,)
        (B, 1, 1),  # wrong number of dims
        (H, W),  # a bare map without batch/channel dims
        (B, 2, H, W),  # channel count that does not broadcast
        (B, 1, H + 1, W),
        (B, 1, H, W, 1),
    ],
)
def test_misfit_shapes_raise_a_message_naming_both_shapes(x, shape):
    v = torch.zeros(shape)
    with pytest.raises(ValueError) as err:
        expand_like(v, x, name="lam")
    msg = str(err.value)
    assert msg.startswith("lam of shape")
    assert str(tuple(shape)) in msg
    assert str(tuple(x.shape)) in msg
    assert f"({B},)" in msg


def test_time_against_a_scalar_x():
    xs = torch.tensor(1.0)
    assert expand_like(torch.tensor(3.0), xs).shape == ()
    with pytest.raises(ValueError, match="scalar"):
        expand_like(torch.zeros(2), xs)


def test_expand_like_accepts_python_numbers(x):
    assert expand_like(0.25, x).shape == ()


# ----------------------------------------------------------------------- check_in_range
@pytest.mark.parametrize("value", [0.0, 0.5, 1.0, torch.tensor([0.0, 1.0]), torch.rand(2, 3)])
def test_in_range_accepts_closed_interval(value):
    assert check_in_range(value, "lam", 0.0, 1.0) is None


@pytest.mark.parametrize(
    ("value", "shown"), [(-0.1, "-0.1"), (1.5, "1.5"), (torch.tensor([0.2, 3.0, 0.1]), "3")]
)
def test_out_of_range_message(value, shown):
    with pytest.raises(ValueError) as err:
        check_in_range(value, "lam", 0.0, 1.0)
    assert str(err.value) == f"lam={shown} is outside the allowed range [0, 1]"


def test_low_open_interval():
    check_in_range(1e-9, "scale", 0.0, 2.0, low_open=True)
    with pytest.raises(ValueError, match=r"scale=0 is outside the allowed range \(0, 2\]"):
        check_in_range(0.0, "scale", 0.0, 2.0, low_open=True)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, torch.tensor([0.5, math.nan])])
def test_in_range_rejects_non_finite(bad):
    with pytest.raises(ValueError, match="t contains non-finite"):
        check_in_range(bad, "t", 0.0, 1.0)


def test_in_range_empty_is_fine():
    check_in_range(torch.empty(0), "t", 0.0, 1.0)


# ------------------------------------------------------------------------- check_finite
def test_check_finite_returns_input():
    v = torch.tensor([1.0, -2.0])
    assert check_finite(v, "v") is v
    w = torch.arange(3)
    assert check_finite(w, "w") is w


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_check_finite_raises(bad):
    with pytest.raises(ValueError, match=r"^std contains non-finite values \(NaN or inf\)$"):
        check_finite(torch.tensor([0.0, bad]), "std")


# ------------------------------------------------------------------------------ as_time
def test_as_time_converts_without_touching_the_input():
    t32 = torch.tensor([0.5, 3.25], dtype=torch.float32)
    before = t32.clone()
    out = as_time(t32)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, before.double(), rtol=0, atol=0)
    assert t32.dtype == torch.float32 and torch.equal(t32, before)


def test_as_time_numbers_and_sequences():
    assert as_time(3).dtype == torch.float64 and as_time(3).shape == ()
    assert as_time([1, 2.5]).tolist() == [1.0, 2.5]
    assert as_time(torch.tensor([4, 7])).tolist() == [4.0, 7.0]
    assert as_time(0.5, dtype=torch.float32).dtype == torch.float32
    # a Python float keeps its full precision (it must not pass through float32)
    assert as_time(0.05).item() == 0.05
    assert as_time([0.05, 0.1]).tolist() == [0.05, 0.1]


@pytest.mark.parametrize(
    "bad", [torch.tensor([True]), torch.tensor([1 + 2j]), "soon", True, 1j, None, [1j]]
)
def test_as_time_rejects_non_real(bad):
    with pytest.raises(ValueError, match="t must be"):
        as_time(bad)


# ---------------------------------------------------------------------- broadcast_shape
def test_broadcast_shape():
    a, b = torch.zeros(2, 1, 1, 1), torch.zeros(2, 1, 4, 4)
    assert broadcast_shape(a, b, "t", "lam") == (2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"t of shape \(2,\) and lam of shape \(3,\)"):
        broadcast_shape(torch.zeros(2), torch.zeros(3), "t", "lam")


def test_one_validation_of_skip_everywhere():
    """``skip`` is a count: 2.0 (or a fraction) is refused by every method that takes it, with
    the same message, and an integer out of range names the range."""
    import numpy as np

    from nidiff._checks import check_skip

    assert check_skip(0, 5) == 0 and check_skip(np.int64(4), 5) == 4
    for bad in (2.0, 0.36, True, "2", None):
        with pytest.raises(ValueError, match="integer count of skipped steps"):
            check_skip(bad, 5)
    with pytest.raises(ValueError, match=r"skip=5 must be < steps=5 \(an integer in \[0, 4\]\)"):
        check_skip(5, 5)
    with pytest.raises(ValueError, match="must be < steps"):
        check_skip(-1, 5)
