"""nidiff's own UNet2D against diffusers' UNet2DModel: same keys, same initial weights from one
seed, bit-identical outputs and gradients, the same config; and which configs it leaves to
diffusers."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from safetensors.torch import load_file

from nidiff.bundled import model_dir
from nidiff.models.diffusers_unet import UNetDenoiser, unet_config, unet_from_config
from nidiff.models.unet import DEFAULTS, UNet2D, unsupported

diffusers = pytest.importorskip("diffusers")

BUNDLED = json.loads((model_dir() / "config.json").read_text())["model"]
# Every option UNet2D implements away from its default, in two small networks.
WIDE = {
    "sample_size": 8, "in_channels": 3, "out_channels": 3, "block_out_channels": [8, 16],
    "down_block_types": ["AttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D"], "layers_per_block": 2,
    "norm_num_groups": 4, "attention_head_dim": 4, "mid_block_scale_factor": 2,
    "downsample_padding": 0, "center_input_sample": True, "freq_shift": 1,
    "flip_sin_to_cos": False, "dropout": 0.1, "attn_norm_num_groups": 2, "norm_eps": 1e-6,
}  # fmt: skip
NO_ATTENTION = {
    "sample_size": 8, "in_channels": 1, "out_channels": 2, "block_out_channels": [8, 16],
    "down_block_types": ["DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D"], "layers_per_block": 1, "norm_num_groups": 8,
    "attention_head_dim": None, "add_attention": False, "num_class_embeds": 3,
    "time_embedding_dim": 24, "act_fn": "swish",
}  # fmt: skip
NO_MID = {**NO_ATTENTION, "mid_block_type": None, "block_out_channels": [8, 8, 16],
          "down_block_types": ["DownBlock2D"] * 3, "up_block_types": ["UpBlock2D"] * 3}  # fmt: skip
CONFIGS = {"bundled": BUNDLED, "wide": WIDE, "no-attention": NO_ATTENTION, "no-mid": NO_MID}


def _pair(cfg: dict) -> tuple[torch.nn.Module, UNet2D]:
    torch.manual_seed(0)
    theirs = unet_from_config(cfg, backend="diffusers")
    torch.manual_seed(0)
    ours = unet_from_config(cfg, backend="nidiff")
    return theirs, ours


def _inputs(cfg: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
    g = torch.Generator().manual_seed(3)
    size = cfg["sample_size"]
    x = torch.randn(3, cfg["in_channels"], size, size, generator=g)
    labels = {"class_labels": torch.tensor([0, 1, 2])} if cfg.get("num_class_embeds") else {}
    return x, torch.tensor([0.5, 313.25, 999.0]), labels


def test_defaults_are_diffusers_defaults():
    params = inspect.signature(diffusers.UNet2DModel.__init__).parameters
    theirs = {k: p.default for k, p in params.items() if k != "self"}
    assert theirs == DEFAULTS


@pytest.mark.parametrize("name", CONFIGS)
def test_same_keys_and_initial_weights_from_one_seed(name):
    theirs, ours = _pair(CONFIGS[name])
    a, b = theirs.state_dict(), ours.state_dict()
    assert list(a) == list(b)  # same keys, same order
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert unet_config(ours) == unet_config(theirs)
    assert type(theirs).__name__ == "UNet2DModel" and isinstance(ours, UNet2D)


@pytest.mark.parametrize("name", CONFIGS)
def test_bit_identical_outputs_and_gradients(name):
    cfg = CONFIGS[name]
    theirs, ours = _pair(cfg)
    if name == "bundled":
        weights = load_file(model_dir() / "model.safetensors")
        theirs.load_state_dict(weights)
        ours.load_state_dict(weights)
    x, t, labels = _inputs(cfg)
    with torch.no_grad():
        assert torch.equal(theirs.eval()(x, t, **labels).sample, ours.eval()(x, t, **labels).sample)
        scalar_t = 250  # diffusers' scalar and 0-d timestep paths
        assert torch.equal(theirs(x, scalar_t, **labels)[0], ours(x, scalar_t, **labels)[0])
        t0 = torch.tensor(7.5)
        assert torch.equal(theirs(x, t0, **labels, return_dict=False)[0],
                           ours(x, t0, **labels, return_dict=False)[0])  # fmt: skip
    losses = []
    for net in (theirs.train(), ours.train()):
        torch.manual_seed(5)  # the same dropout draws
        loss = net(x, t, **labels).sample.square().mean()
        loss.backward()
        losses.append(loss)
    assert torch.equal(*losses)
    grads = {k: p.grad for k, p in theirs.named_parameters()}
    assert [k for k, p in ours.named_parameters() if not torch.equal(p.grad, grads[k])] == []


def test_bundled_denoiser_is_identical_in_float16_storage_and_bfloat16():
    theirs, ours = _pair(BUNDLED)
    weights = load_file(model_dir() / "model.safetensors")
    for net in (theirs, ours):
        net.load_state_dict(weights)
        net.to(torch.bfloat16).eval()
    x, t, labels = _inputs(BUNDLED)
    a = UNetDenoiser(theirs)(x, t, labels["class_labels"])
    b = UNetDenoiser(ours)(x, t, labels["class_labels"])
    assert ours.dtype == torch.bfloat16 and ours.device == torch.device("cpu")
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("change", "reason", "diffusers_builds"),
    [
        ({"down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"]}, "CrossAttnDownBlock2D", 0),
        ({"up_block_types": ["UpBlock2D", "AttnSkipUpBlock2D"]}, "AttnSkipUpBlock2D", 0),
        ({"time_embedding_type": "fourier"}, "time_embedding_type='fourier'", 1),
        ({"resnet_time_scale_shift": "scale_shift"}, "resnet_time_scale_shift", 1),
        ({"class_embed_type": "timestep"}, "class_embed_type", 1),
        ({"downsample_type": "resnet"}, "downsample_type", 1),
        ({"act_fn": "gelu"}, "act_fn", 1),
        ({"cross_attention_dim": 8}, "unknown UNet2DModel option 'cross_attention_dim'", 0),
        ({"_class_name": "UNet2DConditionModel"}, "is not UNet2DModel", 0),
    ],
)
def test_other_configs_are_left_to_diffusers(change, reason, diffusers_builds):
    cfg = {**NO_ATTENTION, **change}
    assert reason in unsupported(cfg)
    with pytest.raises(ValueError, match="does not implement"):
        unet_from_config(cfg, backend="nidiff")
    if diffusers_builds:  # (the others need more options than this small config has)
        assert type(unet_from_config(cfg)).__name__ == "UNet2DModel"  # auto: diffusers'


def test_auto_backend_and_errors():
    assert unsupported(BUNDLED) is None
    assert isinstance(unet_from_config(BUNDLED), UNet2D)
    with pytest.raises(ValueError, match="backend"):
        unet_from_config(BUNDLED, backend="jax")
    with pytest.raises(ValueError, match="differ in length"):
        UNet2D(**{**NO_ATTENTION, "up_block_types": ["UpBlock2D"]})
    net = UNet2D(**NO_ATTENTION)
    x, t, labels = _inputs(NO_ATTENTION)
    with pytest.raises(ValueError, match="class_labels should be provided"):
        net(x, t)
    with pytest.raises(ValueError, match="class_embedding needs to be initialized"):
        UNet2D(**{**NO_ATTENTION, "num_class_embeds": None})(x, t, **labels)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_bit_identical_on_cuda(dtype):
    """The same kernels on the GPU (SDPA picks its kernel from the same shapes and dtypes)."""
    theirs, ours = _pair(BUNDLED)
    weights = load_file(model_dir() / "model.safetensors")
    for net in (theirs, ours):
        net.load_state_dict(weights)
        net.to("cuda", dtype).eval()
    x, t, labels = _inputs(BUNDLED)
    with torch.no_grad():
        a = UNetDenoiser(theirs)(x.cuda(), t.cuda(), labels["class_labels"].cuda())
        b = UNetDenoiser(ours)(x.cuda(), t.cuda(), labels["class_labels"].cuda())
    assert torch.equal(a, b)
