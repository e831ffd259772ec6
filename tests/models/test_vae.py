"""The VAE codec of latent-trained models (``nidiff.models.vae``, ``nidiff.models.vae_space``):
the scaling against diffusers' own encode/decode, the record and its mismatch checks, the
``AutoencoderKL`` directory rules."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("diffusers")

import torch
from tiny_vae import save_tiny_vae

from nidiff.models.vae import LatentScaling, VaeCodec, check_vae, read_vae_config


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    return save_tiny_vae(tmp_path_factory.mktemp("vae") / "vae")


def test_scaling_inverts_and_round_trips_through_json():
    m = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    for scaling in (LatentScaling(0.5, 0.18215), LatentScaling((0.1, 0.2, 0.3, 0.4), (1, 2, 3, 4))):
        z = scaling.apply(m)
        torch.testing.assert_close(scaling.invert(z), m, rtol=1e-6, atol=1e-6)
        back = LatentScaling.from_dict(json.loads(json.dumps(scaling.to_dict())))
        torch.testing.assert_close(back.apply(m), z, rtol=0, atol=0)
    per_channel = LatentScaling.of_config(
        {"scaling_factor": 2.0, "latents_mean": [1, 2], "latents_std": [4, 8]}
    )
    assert per_channel.shift == (1.0, 2.0) and per_channel.scale == (0.5, 0.25)
    assert LatentScaling.of_config({"scaling_factor": 0.3, "shift_factor": 0.1}).shift == 0.1
    y = 3 * m + 1
    assert float(LatentScaling.of_data(y).apply(y).std()) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="zero spread"):
        LatentScaling.of_data(torch.zeros(2, 4, 3, 3))


def test_codec_is_diffusers_encode_and_decode_with_the_configs_scaling(vae_dir):
    from diffusers import AutoencoderKL

    codec = VaeCodec(vae_dir)
    vae = AutoencoderKL.from_pretrained(str(vae_dir)).eval()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    s = vae.config.scaling_factor
    with torch.no_grad():
        want = vae.encode(x).latent_dist.mode() * s
        z = codec.encode(x)
        torch.testing.assert_close(z, want, rtol=0, atol=1e-6)
        image = vae.decode(z / s).sample.clamp(-1, 1)
    torch.testing.assert_close(codec.decode(z), image, rtol=0, atol=1e-6)
    assert z.shape == (2, 4, 8, 8) and codec.factor == 2
    with pytest.raises(ValueError, match="channels; the VAE takes 3"):
        codec.encode(x[:, :1])
    with pytest.raises(ValueError, match=r"latents must be \(B, 4, h, w\)"):
        codec.decode(torch.zeros(1, 8, 8, 8))


def test_record_and_mismatch_checks(vae_dir, tmp_path):
    codec = VaeCodec(vae_dir)
    rec = json.loads(json.dumps(codec.record()))
    check_vae(rec, codec, "m")  # itself: fine
    assert rec["latent_channels"] == 4 and rec["scaling"]["source"] == "vae"
    eight = VaeCodec(save_tiny_vae(tmp_path / "v8", latent_channels=8))
    with pytest.raises(ValueError, match="m was trained with a VAE of latent_channels 4"):
        check_vae(rec, eight, "m")
    other = VaeCodec(save_tiny_vae(tmp_path / "v4", seed=1))
    with pytest.raises(ValueError, match="trained with another VAE"):
        check_vae(rec, other, "m")


def test_vae_directories(vae_dir, tmp_path):
    pipeline = tmp_path / "pipe"
    pipeline.mkdir()
    (pipeline / "model_index.json").write_text("{}")
    save_tiny_vae(pipeline / "vae")
    assert read_vae_config(pipeline)[0] == pipeline / "vae"  # a pipeline's vae/
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="holds a UNet2DModel, not an AutoencoderKL"):
        read_vae_config(tmp_path / "unet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no config\.json"):
        read_vae_config(tmp_path / "empty")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text((vae_dir / "config.json").read_text())
    with pytest.raises(ValueError, match="has no weights"):
        read_vae_config(tmp_path / "noweights")
