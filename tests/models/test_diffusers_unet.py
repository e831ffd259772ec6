"""diffusers UNet adapters: paper-time offset, conditions, guidance, factory, parametrisations."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

pytest.importorskip("diffusers")

from nidiff.models.contract import ClassifierFreeGuidance
from nidiff.models.diffusers_unet import (
    ConditionalUNetDenoiser,
    UNetDenoiser,
    fashion_unet,
    fashion_unet_config,
    unet_config,
    unet_from_config,
)
from nidiff.schedule import DiscreteSchedule

K = 3  # classes of the tiny model


def _tiny(num_classes: int = K):
    torch.manual_seed(0)
    cfg = fashion_unet_config(num_classes, sample_size=8, channels=(8, 16), attention_head_dim=4)
    return unet_from_config(cfg).eval()


def _x(B: int = 3, C: int = 1) -> torch.Tensor:
    return torch.randn(B, C, 8, 8, generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def test_paper_time_is_diffusers_timestep_plus_one():
    unet, x = _tiny(0), _x()
    model = UNetDenoiser(unet)
    raw = unet(x, torch.tensor([4, 9, 499])).sample
    t = torch.tensor([5.0, 10.0, 500.0], dtype=torch.float64)
    torch.testing.assert_close(model(x, t), raw, rtol=0, atol=0)
    per_pixel = t.reshape(3, 1, 1, 1).expand(3, 1, 8, 8)  # constant within each sample
    torch.testing.assert_close(model(x, per_pixel), raw, rtol=0, atol=0)
    torch.testing.assert_close(model(x, torch.tensor(5.0)), unet(x, 4).sample, rtol=0, atol=0)


@torch.no_grad()
def test_varying_per_pixel_time_rejected():
    model, x = UNetDenoiser(_tiny(0)), _x()
    t = torch.full((3, 1, 8, 8), 10.0)
    t[0, 0, 0, 0] = 20.0
    with pytest.raises(ValueError, match="per-pixel"):
        model(x, t)


@torch.no_grad()
def test_class_labels_pass_through_and_null_class():
    unet, x = _tiny(), _x()
    model = UNetDenoiser(unet)
    labels = torch.tensor([0, 2, 3])
    raw = unet(x, torch.tensor([6, 6, 6]), class_labels=labels).sample
    torch.testing.assert_close(model(x, torch.tensor(7.0), labels), raw, rtol=0, atol=0)
    assert not torch.allclose(model(x, torch.tensor(7.0), labels.flip(0)), raw)
    assert model.num_class_embeds == K + 1 and model.null_class == K
    assert model.null_cond().tolist() == [K]
    with pytest.raises(ValueError, match="null_class=3"):
        model(x, torch.tensor(7.0))
    with pytest.raises(ValueError, match=r"0\.\.3"):
        model(x, torch.tensor(7.0), torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match="integers"):
        model(x, torch.tensor(7.0), torch.zeros(3))
    uncond = UNetDenoiser(_tiny(0))
    assert uncond.null_class is None
    with pytest.raises(ValueError, match="unconditional"):
        uncond(x, torch.tensor(7.0), labels)
    with pytest.raises(ValueError, match="unconditional"):
        uncond.null_cond()


@torch.no_grad()
def test_classifier_free_guidance_batched_equals_separate():
    model, x = UNetDenoiser(_tiny()), _x()
    t, labels, w = torch.tensor([3.0, 40.0, 900.0]), torch.tensor([0, 1, 2]), 2.5
    guided = ClassifierFreeGuidance(model, w, model.null_cond())
    eps_c = model(x, t, labels)
    eps_u = model(x, t, torch.full((3,), K))
    expected = eps_u + w * (eps_c - eps_u)
    torch.testing.assert_close(guided(x, t, labels), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.guided(w)(x, t, labels), expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_dtype_passes_through():
    unet, x = _tiny(0).double(), _x()
    out = UNetDenoiser(unet)(x, torch.tensor(11.0))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, unet(x.double(), 10).sample.float())


class _Wrapped(nn.Module):
    """Like ``DistributedDataParallel``: holds the network as ``.module``, hides its attributes."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


@torch.no_grad()
def test_wrapped_network_is_unwrapped():
    unet, x, labels = _tiny(), _x(), torch.tensor([0, 1, 3])
    model = UNetDenoiser(_Wrapped(unet))
    assert model.null_class == K
    torch.testing.assert_close(model(x, 9.0, labels), UNetDenoiser(unet)(x, 9.0, labels))
    assert unet_config(_Wrapped(unet)) == unet_config(unet)


def _tiny_conditional():
    torch.manual_seed(0)
    cfg = {
        "_class_name": "UNet2DConditionModel",
        "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
        "block_out_channels": [8, 16], "norm_num_groups": 4, "cross_attention_dim": 12,
        "attention_head_dim": 2,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    }  # fmt: skip
    return unet_from_config(cfg).eval()


@torch.no_grad()
def test_conditional_unet():
    unet, x = _tiny_conditional(), _x(2, 4)
    states = torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(2))
    model = ConditionalUNetDenoiser(unet)
    raw = unet(x, torch.tensor([19, 19]), encoder_hidden_states=states).sample
    t = torch.tensor(20.0)
    torch.testing.assert_close(model(x, t, states), raw, rtol=0, atol=0)
    torch.testing.assert_close(model(x, t, {"encoder_hidden_states": states}), raw, rtol=0, atol=0)
    with pytest.raises(ValueError, match="L, D"):
        model(x, t, states[:1])
    with pytest.raises(ValueError, match="hidden states"):
        model(x, t, None)
    null = torch.zeros(1, 5, 12)
    guided = ClassifierFreeGuidance(model, 4.0, null)(x, t, states)
    eps_u = model(x, t, null.expand(2, 5, 12))
    torch.testing.assert_close(guided, eps_u + 4.0 * (raw - eps_u), rtol=1e-5, atol=1e-5)
    rebuilt = unet_from_config(json.loads(json.dumps(unet_config(unet))))
    assert type(rebuilt).__name__ == "UNet2DConditionModel"


class _OracleV(nn.Module):
    """A stand-in network that outputs a fixed target (v or x0) whatever its input."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.target = target
        self.config = SimpleNamespace(num_class_embeds=None)
        self.class_embedding = None
        self.dtype, self.device = torch.float64, torch.device("cpu")

    def forward(self, x, timesteps, **kwargs):
        return SimpleNamespace(sample=self.target)


@pytest.mark.parametrize("prediction", ["v_prediction", "sample"])
def test_other_parametrisations_convert_to_epsilon(prediction):
    schedule = DiscreteSchedule.linear(1000)
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    t = torch.tensor([30.0, 700.0], dtype=torch.float64)
    sa, s1 = (c.reshape(2, 1, 1, 1).float() for c in schedule.coefficients(t))
    x_t = sa * x0 + s1 * eps
    target = sa * eps - s1 * x0 if prediction == "v_prediction" else x0
    model = UNetDenoiser(_OracleV(target.double()), prediction, schedule)
    torch.testing.assert_close(model(x_t, t), eps, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="schedule"):
        UNetDenoiser(_OracleV(target), prediction)
    with pytest.raises(ValueError, match="prediction"):
        UNetDenoiser(_OracleV(target), "x0", schedule)


def test_fashion_factory():
    cfg = fashion_unet_config()
    assert json.loads(json.dumps(cfg)) == cfg  # plain, checkpoint-friendly
    unet = fashion_unet()
    n = sum(p.numel() for p in unet.parameters())
    print(f"fashion_unet parameters: {n:,}")
    assert 2.6e6 < n < 2.8e6
    assert unet.config.num_class_embeds == 11 and unet.config.in_channels == 1
    assert hasattr(unet.down_blocks[-1], "attentions")  # the lowest block attends
    assert not hasattr(unet.down_blocks[0], "attentions")
    rebuilt = unet_from_config(json.loads(json.dumps(unet_config(unet))))
    rebuilt.load_state_dict(unet.state_dict())
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        a = UNetDenoiser(unet)(x, torch.tensor(100.0), torch.tensor([1, 10]))
        b = UNetDenoiser(rebuilt)(x, torch.tensor(100.0), torch.tensor([1, 10]))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert fashion_unet(sample_size=32).config.sample_size == 32
    with pytest.raises(ValueError, match="divisible"):
        fashion_unet_config(sample_size=30)
    with pytest.raises(ValueError, match="_class_name"):
        unet_from_config({"_class_name": "VQModel"})
