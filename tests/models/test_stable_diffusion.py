"""Stable Diffusion adapter on a tiny pipeline built offline: loading, VAE, text, EF, NGDM."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import tiny_sd

from nidiff.editing import lam_from_map, ngdm, weighting_map
from nidiff.inversion import (
    edit_friendly_invert,
    edit_friendly_regenerate,
    load_inversion,
    save_inversion,
)
from nidiff.models.contract import ClassifierFreeGuidance
from nidiff.models.diffusers_unet import ConditionalUNetDenoiser
from nidiff.models.stable_diffusion import StableDiffusion
from nidiff.schedule import leading_grid

EMBED_DIM, MAX_LENGTH = tiny_sd.EMBED_DIM, tiny_sd.MAX_LENGTH

SOURCE, TARGET = "a photo of a cat", "a photo of a dog"


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    return tiny_sd.save_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="module")
def sd(pipe_dir):
    return StableDiffusion.from_pretrained(pipe_dir)


def _image(B: int = 1, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 3, size, size, generator=g) * 2 - 1


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_loads_components_and_the_pipelines_own_schedule(sd):
    assert isinstance(sd.denoiser, ConditionalUNetDenoiser)
    assert sd.denoiser.prediction == "epsilon"
    assert sd.vae_scale_factor == 2 and sd.default_image_size == 16
    ac = sd.scheduler.alphas_cumprod.to(torch.float64)
    t = torch.arange(1, 1001, dtype=torch.float64)
    torch.testing.assert_close(sd.process.schedule.alpha_bar(t), ac, rtol=1e-12, atol=0)
    assert float(sd.process.schedule.alpha_bar(torch.tensor(0.0, dtype=torch.float64))) == 1.0
    assert not any(p.requires_grad for p in sd.unet.parameters())


def test_not_a_pipeline_directory(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        StableDiffusion.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"no model_index\.json"):
        StableDiffusion.from_pretrained(tmp_path)


@pytest.mark.parametrize("component", ["vae", "tokenizer"])
def test_missing_component_is_named(pipe_dir, tmp_path, component):
    broken = tmp_path / "broken"
    shutil.copytree(pipe_dir, broken)
    shutil.rmtree(broken / component)
    with pytest.raises(ValueError, match=rf"lacks the component\(s\) {component}"):
        StableDiffusion.from_pretrained(broken)


def test_component_absent_from_index_is_named(pipe_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(pipe_dir, broken)
    index = json.loads((broken / "model_index.json").read_text())
    index["text_encoder"] = [None, None]
    (broken / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="text_encoder"):
        StableDiffusion.from_pretrained(broken)


def test_unloadable_component_is_named(pipe_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(pipe_dir, broken)
    for f in (broken / "unet").iterdir():
        if f.suffix == ".safetensors":
            f.unlink()
    with pytest.raises(ValueError, match="component 'unet'"):
        StableDiffusion.from_pretrained(broken)


def test_encode_decode_shapes_and_size_check(sd):
    x = _image(2)
    before = x.clone()
    z = sd.encode_image(x)
    assert z.shape == (2, 4, 16, 16) and z.dtype == torch.float32
    torch.testing.assert_close(x, before, rtol=0, atol=0)
    torch.testing.assert_close(sd.encode_image(x), z, rtol=0, atol=0)  # the mode: deterministic
    raw = sd.vae.encode(x).latent_dist.mode() * sd.vae.config.scaling_factor
    torch.testing.assert_close(z, raw)
    img = sd.decode_latents(z)
    assert img.shape == (2, 3, 32, 32) and img.abs().max() <= 1
    with pytest.raises(ValueError, match="multiple of the VAE's downsampling factor 2"):
        sd.encode_image(_image(1, size=31))
    with pytest.raises(ValueError, match="channels"):
        sd.encode_image(torch.zeros(1, 1, 32, 32))


def test_load_image_centre_crop_and_size(sd, tmp_path):
    from PIL import Image

    arr = torch.zeros(40, 60, 3, dtype=torch.uint8)
    arr[:, 10:50] = 255  # the centred 40x40 square is white, the side bands black
    path = tmp_path / "img.png"
    Image.fromarray(arr.numpy()).save(path)
    x = sd.load_image(path, 32)
    assert x.shape == (1, 3, 32, 32)
    inner = x[..., 2:-2, 2:-2]  # bicubic taps near the crop edge may reach the black bands
    torch.testing.assert_close(inner, torch.ones_like(inner))
    assert float(x.mean()) > 0.9  # a resize without the crop would keep the bands (mean 1/3)
    assert sd.load_image(path).shape == (1, 3, 16, 16)  # default: the UNet's sample size × f
    with pytest.raises(ValueError, match="multiple"):
        sd.load_image(path, 33)


def test_encode_prompt_shapes_null_and_truncation(sd):
    e = sd.encode_prompt([SOURCE, TARGET])
    assert e.shape == (2, MAX_LENGTH, EMBED_DIM)
    assert not torch.equal(e[0], e[1])
    null = sd.null_cond()
    assert null.shape == (1, MAX_LENGTH, EMBED_DIM)
    torch.testing.assert_close(null, sd.encode_prompt([""]), rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sd.encode_prompt([SOURCE])
    long = " ".join(["cat"] * 40)  # 40 words of 3 letter-tokens each
    with pytest.warns(UserWarning, match="truncated") as record:
        e_long = sd.encode_prompt([long])
    assert record[0].filename == __file__  # the warning points at the caller
    assert e_long.shape == (1, MAX_LENGTH, EMBED_DIM)
    with pytest.raises(ValueError, match="list of strings"):
        sd.encode_prompt(SOURCE)
    assert isinstance(sd.guided(3.5), ClassifierFreeGuidance)


def test_edit_friendly_reconstruction_through_latents_is_exact(sd, tmp_path):
    z0 = sd.encode_image(_image())
    cond = sd.encode_prompt([SOURCE])
    grid = leading_grid(sd.process.schedule, 8, offset=1)
    kw = {"guidance": 3.5, "null_cond": sd.null_cond()}
    inv = edit_friendly_invert(
        sd.denoiser, z0, sd.process, grid, cond=cond, generator=_gen(1), **kw
    )
    rec = edit_friendly_regenerate(sd.denoiser, inv, sd.process, cond=cond, **kw).x0
    assert float((rec - z0).norm() / z0.norm()) <= 1e-5

    path = save_inversion(inv, tmp_path / "inv.safetensors", trajectory=False)
    loaded = load_inversion(path, process=sd.process)
    torch.testing.assert_close(loaded.cond, cond, rtol=0, atol=0)
    again = edit_friendly_regenerate(sd.denoiser, loaded, sd.process, **kw).x0
    assert float((again - z0).norm() / z0.norm()) <= 1e-5

    target = sd.encode_prompt([TARGET])
    edit = edit_friendly_regenerate(
        sd.denoiser,
        loaded,
        sd.process,
        cond=target,
        guidance=15.0,
        null_cond=sd.null_cond(),
        skip=3,
    )
    assert edit.x0.shape == z0.shape and torch.isfinite(edit.x0).all()
    assert edit.nfe == 8  # 3 replayed source steps (no trajectory stored) + 5 edit steps
    assert sd.decode_latents(edit.x0).shape == (1, 3, 32, 32)


def test_text_guided_ngdm_at_latent_resolution(sd):
    z0 = sd.encode_image(_image(seed=2))
    src, tgt, null = sd.encode_prompt([SOURCE]), sd.encode_prompt([TARGET]), sd.null_cond()
    wm = weighting_map(
        sd.denoiser, z0, sd.process, source_cond=src, target_cond=tgt, n=2, generator=_gen(3)
    )
    assert wm.A.shape == wm.lam.shape == (1, 1, 16, 16)  # the latent grid, shared by channels
    assert float(wm.diff.max()) > 0  # the prompts change the noise prediction
    lam = lam_from_map(wm.A)
    grid = leading_grid(sd.process.schedule, 6, offset=1)
    out = ngdm(
        sd.denoiser,
        z0,
        sd.process,
        grid,
        lam,
        cond=tgt,
        guidance=7.5,
        null_cond=null,
        generator=_gen(4),
    )
    assert out.x0.shape == z0.shape and torch.isfinite(out.x0).all()
    assert out.start_times.shape == (1, 1, 16, 16)
    image = sd.decode_latents(out.x0)
    assert image.shape == (1, 3, 32, 32) and torch.isfinite(image).all()


def test_half_precision_networks_return_float32(pipe_dir):
    sd16 = StableDiffusion.from_pretrained(pipe_dir, dtype=torch.bfloat16)
    assert sd16.unet.dtype == sd16.vae.dtype == torch.bfloat16
    z = sd16.encode_image(_image())
    c = sd16.encode_prompt([SOURCE])
    assert z.dtype == c.dtype == torch.float32
    assert sd16.denoiser(z, torch.tensor(500.0), c).dtype == torch.float32
    assert sd16.decode_latents(z).dtype == torch.float32
