"""The model contract: per-sample time reduction, classifier-free guidance, batched conditions."""

from __future__ import annotations

import math

import pytest
import torch

from nidiff._checks import expand_like
from nidiff.models.contract import ClassifierFreeGuidance, Denoiser, concat_cond, time_per_sample

B, C, H, W = 3, 2, 4, 4
NULL = 10  # the reserved "no class" label of the toy model


class ToyModel:
    """A linear toy model ``out = 0.5 x + 0.01 t + e(cond)`` that records its calls.

    ``cond`` is class labels ``(B,)`` (embedded through a fixed table), or a dict with labels
    under ``"label"`` and a text embedding ``(B, L, D)`` under ``"text"``.
    """

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.table = torch.randn(NULL + 1, C, 1, 1, generator=g)
        self.calls: list[tuple[torch.Size, torch.Size, object]] = []

    def embed(self, cond) -> torch.Tensor:
        if isinstance(cond, dict):
            text = cond["text"].mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
            return self.table[cond["label"]] + text
        return self.table[cond]

    def __call__(self, x_t, t, cond=None):
        t = torch.as_tensor(t)
        self.calls.append((x_t.shape, t.shape, cond))
        return 0.5 * x_t + 0.01 * expand_like(t, x_t) + self.embed(cond)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def labels() -> torch.Tensor:
    return torch.tensor([3, 0, 7])


# ------------------------------------------------------------------------- time_per_sample
def test_scalar_time_is_repeated_per_sample(x):
    out = time_per_sample(torch.tensor(250.0), x)
    assert out.shape == (B,) and out.tolist() == [250.0] * B
    assert time_per_sample(0.5, x).tolist() == [0.5] * B


def test_per_sample_time_passes_through(x):
    t = torch.tensor([1.0, 500.0, 999.0])
    assert torch.equal(time_per_sample(t, x), t)
    assert torch.equal(time_per_sample(t.reshape(B, 1, 1, 1), x), t)


def test_per_pixel_constant_time_reduces(x):
    t = torch.tensor([1.0, 500.0, 999.0]).reshape(B, 1, 1, 1).expand(B, 1, H, W).clone()
    before = t.clone()
    assert torch.equal(time_per_sample(t, x), torch.tensor([1.0, 500.0, 999.0]))
    full = t.expand(B, C, H, W).clone()
    assert torch.equal(time_per_sample(full, x), torch.tensor([1.0, 500.0, 999.0]))
    assert torch.equal(time_per_sample(torch.full((1, 1, H, W), 7.0), x), torch.full((B,), 7.0))
    assert torch.equal(t, before)


def test_per_pixel_varying_time_is_refused(x):
    t = torch.full((B, 1, H, W), 100.0)
    t[1, 0, 2, 3] = 101.0
    with pytest.raises(ValueError, match="per-pixel"):
        time_per_sample(t, x)


@pytest.mark.parametrize("shape", [(B + 1,), (B, 1, 1), (B, 3, H, W)])
def test_time_of_the_wrong_shape_is_refused(x, shape):
    with pytest.raises(ValueError, match="does not fit"):
        time_per_sample(torch.zeros(shape), x)


def test_non_finite_time_is_refused(x):
    with pytest.raises(ValueError, match="non-finite"):
        time_per_sample(torch.tensor([1.0, math.nan, 2.0]), x)


# ------------------------------------------------------------------- classifier-free guidance
def _branches(x, t, cond, null):
    """The conditional and unconditional outputs by two separate, unbatched calls."""
    ref = ToyModel()
    return ref(x, t, cond), ref(x, t, null)


def test_toy_model_follows_the_protocol():
    assert isinstance(ToyModel(), Denoiser)


def test_scale_one_is_the_conditional_model(x, labels):
    model = ToyModel()
    cfg = ClassifierFreeGuidance(model, 1.0, torch.tensor([NULL]))
    t = torch.tensor([10.0, 20.0, 30.0])
    eps_c, _ = _branches(x, t, labels, torch.full((B,), NULL))
    assert torch.equal(cfg(x, t, labels), eps_c)
    assert len(model.calls) == 1 and model.calls[0][0] == (B, C, H, W)


def test_scale_zero_is_the_unconditional_model(x, labels):
    model = ToyModel()
    cfg = ClassifierFreeGuidance(model, 0.0, torch.tensor([NULL]))
    t = torch.tensor(40.0)
    _, eps_u = _branches(x, t, labels, torch.full((B,), NULL))
    assert torch.equal(cfg(x, t, labels), eps_u)
    assert len(model.calls) == 1
    assert torch.equal(model.calls[0][2], torch.full((B,), NULL))


@pytest.mark.parametrize(
    "t",
    [
        torch.tensor(500.0),
        torch.tensor([10.0, 500.0, 990.0]),
        torch.tensor([10.0, 500.0, 990.0]).reshape(B, 1, 1, 1),
        torch.linspace(0, 900, B * H * W).reshape(B, 1, H, W),  # NGDM per-pixel times
    ],
    ids=["scalar", "per-sample", "per-sample-4d", "per-pixel"],
)
@pytest.mark.parametrize("scale", [3.5, 7.5])
def test_general_scale_is_one_batched_call(x, labels, t, scale):
    model = ToyModel()
    cfg = ClassifierFreeGuidance(model, scale, torch.tensor([NULL]))
    x_before, t_before, labels_before = x.clone(), t.clone(), labels.clone()
    out = cfg(x, t, labels)
    eps_c, eps_u = _branches(x, t, labels, torch.full((B,), NULL))
    torch.testing.assert_close(out, eps_u + scale * (eps_c - eps_u))
    # the same thing written out for the toy model: only the condition embedding is guided
    emb = ToyModel().table
    expected = 0.5 * x + 0.01 * expand_like(t, x) + emb[NULL] + scale * (emb[labels] - emb[NULL])
    torch.testing.assert_close(out, expected)
    # one network call on the doubled batch; conditional half first, null repeated over the batch
    assert len(model.calls) == 1
    x_shape, t_shape, cond = model.calls[0]
    assert x_shape == (2 * B, C, H, W)
    assert torch.equal(cond, torch.tensor([3, 0, 7, NULL, NULL, NULL]))
    assert t_shape == (() if t.ndim == 0 else (2 * B, *t.shape[1:]))
    # nothing the caller passed in was modified
    assert (
        torch.equal(x, x_before) and torch.equal(t, t_before) and torch.equal(labels, labels_before)
    )


def test_scalar_null_label_is_repeated(x, labels):
    model = ToyModel()
    out = ClassifierFreeGuidance(model, 2.0, torch.tensor(NULL))(x, torch.tensor(5.0), labels)
    eps_c, eps_u = _branches(x, torch.tensor(5.0), labels, torch.full((B,), NULL))
    torch.testing.assert_close(out, eps_u + 2.0 * (eps_c - eps_u))
    assert torch.equal(model.calls[0][2][B:], torch.full((B,), NULL))


def test_dict_conditions(x, labels):
    L, D = 5, 6
    g = torch.Generator().manual_seed(2)
    cond = {"label": labels, "text": torch.randn(B, L, D, generator=g)}
    null = {"label": torch.tensor([NULL]), "text": torch.zeros(1, L, D)}
    model = ToyModel()
    t = torch.tensor([1.0, 2.0, 3.0])
    out = ClassifierFreeGuidance(model, 4.0, null)(x, t, cond)
    null_b = {"label": torch.full((B,), NULL), "text": torch.zeros(B, L, D)}
    eps_c, eps_u = _branches(x, t, cond, null_b)
    torch.testing.assert_close(out, eps_u + 4.0 * (eps_c - eps_u))
    assert len(model.calls) == 1
    sent = model.calls[0][2]
    assert sent.keys() == {"label", "text"}
    assert sent["text"].shape == (2 * B, L, D)
    assert torch.equal(sent["text"][:B], cond["text"]) and (sent["text"][B:] == 0).all()


def test_callable_null_cond(x, labels):
    model = ToyModel()
    cfg = ClassifierFreeGuidance(model, 2.0, lambda c: torch.full_like(c, NULL))
    out = cfg(x, torch.tensor(3.0), labels)
    eps_c, eps_u = _branches(x, torch.tensor(3.0), labels, torch.full((B,), NULL))
    torch.testing.assert_close(out, eps_u + 2.0 * (eps_c - eps_u))


def test_full_batch_null_cond_is_used_as_is(x, labels):
    null = torch.tensor([NULL, NULL, 0])
    model = ToyModel()
    ClassifierFreeGuidance(model, 2.0, null)(x, torch.tensor(3.0), labels)
    assert torch.equal(model.calls[0][2][B:], null)


@pytest.mark.parametrize("scale", [-0.5, math.nan, math.inf])
def test_bad_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        ClassifierFreeGuidance(ToyModel(), scale, torch.tensor([NULL]))


def test_bad_null_cond(x, labels):
    with pytest.raises(ValueError, match="null_cond has batch 2"):
        ClassifierFreeGuidance(ToyModel(), 2.0, torch.tensor([NULL, NULL]))(x, 1.0, labels)
    with pytest.raises(ValueError, match="unsupported null_cond type list"):
        ClassifierFreeGuidance(ToyModel(), 2.0, [NULL])(x, 1.0, labels)


def test_bad_time_shape_in_guidance(x, labels):
    cfg = ClassifierFreeGuidance(ToyModel(), 2.0, torch.tensor([NULL]))
    with pytest.raises(ValueError, match="does not fit"):
        cfg(x, torch.zeros(B + 1), labels)


# ------------------------------------------------------------------------------ concat_cond
def test_concat_cond():
    a, b = torch.arange(2), torch.arange(3)
    assert torch.equal(concat_cond(a, b), torch.tensor([0, 1, 0, 1, 2]))
    assert concat_cond(None, None) is None
    nested = concat_cond({"x": a, "y": {"z": a}}, {"x": b, "y": {"z": b}})
    assert torch.equal(nested["x"], torch.tensor([0, 1, 0, 1, 2]))
    assert torch.equal(nested["y"]["z"], torch.tensor([0, 1, 0, 1, 2]))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (torch.zeros(2), None),
        (None, torch.zeros(2)),
        ({"x": torch.zeros(1)}, {"y": torch.zeros(1)}),
        ({"x": torch.zeros(1)}, torch.zeros(1)),
        ([1], [2]),
    ],
)
def test_concat_cond_refuses_mismatched_conditions(a, b):
    with pytest.raises(ValueError, match="cannot batch conditions"):
        concat_cond(a, b)
