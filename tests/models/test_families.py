"""The family registry and the SDXL/SD3/FLUX adapters on saved tiny pipelines: detection from
``model_index.json``, refusals that name what is wrong, size rules, truncation warnings,
conditions that batch and save, guidance-distilled FLUX's guidance as an input, offload."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

pytest.importorskip("diffusers")

import tiny_families

from nidiff.models.contract import ClassifierFreeGuidance, concat_cond, with_guidance
from nidiff.models.families import FAMILIES, detect_family, load_pipeline
from nidiff.models.flux import DistilledGuidance

NEW = ("sdxl", "sd3", "flux")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: tiny_families.save_tiny(f, root) for f in ("sd", *NEW)}


@pytest.fixture(scope="module")
def spaces(saved):
    return {f: load_pipeline(saved[f]) for f in NEW}


def test_each_family_is_detected_and_loaded(saved, spaces):
    for name, path in saved.items():
        assert detect_family(path).name == name
    assert {type(s).__name__ for s in spaces.values()} == {
        "StableDiffusionXL", "StableDiffusion3", "Flux",
    }  # fmt: skip
    assert [spaces[f].family for f in NEW] == list(NEW)
    for f in NEW:  # the registry's default guidance is the adapter's
        assert spaces[f].default_guidance == FAMILIES[f].guidance


def test_unsupported_family_names_the_supported_ones(saved, tmp_path):
    other = tmp_path / "kandinsky"
    shutil.copytree(saved["sdxl"], other)
    index = json.loads((other / "model_index.json").read_text())
    index["_class_name"] = "KandinskyPipeline"
    (other / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="KandinskyPipeline, which nidiff does not support") as e:
        load_pipeline(other)
    for name in FAMILIES:
        assert f"{name} (" in str(e.value)
    assert "StableDiffusion3Pipeline" in str(e.value) and "FluxPipeline" in str(e.value)


@pytest.mark.parametrize(
    ("family", "component"),
    [("sdxl", "text_encoder_2"), ("sd3", "transformer"), ("flux", "tokenizer_2")],
)
def test_missing_components_are_named(saved, tmp_path, family, component):
    broken = tmp_path / family
    shutil.copytree(saved[family], broken, ignore=shutil.ignore_patterns(component))
    with pytest.raises(ValueError, match=rf"lacks the component\(s\) {component} \("):
        load_pipeline(broken)


def test_sd3_without_t5_loads_and_a_refiner_is_refused(saved, tmp_path):
    no_t5 = tmp_path / "sd3-no-t5"
    shutil.copytree(saved["sd3"], no_t5, ignore=shutil.ignore_patterns("*_3"))
    index = json.loads((no_t5 / "model_index.json").read_text())
    index |= {"text_encoder_3": [None, None], "tokenizer_3": [None, None]}
    (no_t5 / "model_index.json").write_text(json.dumps(index))
    space = load_pipeline(no_t5)
    assert space.text_encoder_3 is None
    cond = space.encode_prompt(["a cat"])
    assert float(cond["encoder_hidden_states"][:, 77:].abs().max()) == 0  # T5's part: zeros
    refiner = tmp_path / "refiner"
    shutil.copytree(saved["sdxl"], refiner)
    index = json.loads((refiner / "model_index.json").read_text())
    index |= {"requires_aesthetics_score": True, "text_encoder": [None, None]}
    (refiner / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="SDXL refiner"):
        load_pipeline(refiner)


def test_size_rules(spaces):
    """VAE factor 2 for the tiny pipelines (8 for the real ones); SD3 × patch 2, FLUX × 2×2."""
    assert {f: spaces[f].size_multiple for f in NEW} == {"sdxl": 2, "sd3": 4, "flux": 4}
    spaces["sdxl"].check_image_size(30, 30)
    with pytest.raises(ValueError, match="multiple of the VAE's downsampling factor 2"):
        spaces["sdxl"].check_image_size(31, 32)
    with pytest.raises(ValueError, match=r"multiple of 4 on both sides for sd3 .* × patch 2"):
        spaces["sd3"].check_image_size(30, 32)
    with pytest.raises(ValueError, match=r"multiple of 4 on both sides for flux .* × packing 2"):
        spaces["flux"].encode_image(torch.zeros(1, 3, 34, 34))
    assert spaces["flux"].latent_shape(2, 32) == (2, 16, 16, 16)


@pytest.mark.parametrize("family", NEW)
def test_long_prompts_are_truncated_with_a_warning(spaces, family):
    space = spaces[family]
    with pytest.warns(UserWarning, match="truncated") as caught:
        cond = space.encode_prompt(["a dog " * 200])  # 800 tokens: above CLIP's 77 and T5's
    names = " ".join(str(w.message) for w in caught)
    assert "77" in names
    if family != "sdxl":
        assert "T5" in names and str(space.max_sequence_length) in names
    assert all(v.shape[0] == 1 for v in cond.values())


@pytest.mark.parametrize("family", NEW)
def test_conditions_batch_and_the_denoiser_runs(spaces, family):
    space = spaces[family]
    a, b = space.condition(["a cat", "a dog"])
    both = concat_cond(a, b)
    x = torch.randn(2, *space.latent_shape(1, 32)[1:], generator=torch.Generator().manual_seed(0))
    t = space.grid(4, size=32).t[1]
    with torch.no_grad():
        out = space.denoiser(x, t, both)
        one = space.denoiser(x[:1], t, a)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out[:1], one, rtol=1e-4, atol=1e-5)
    guided = with_guidance(space.denoiser, 2.0, space.null_cond())
    expected = DistilledGuidance if family == "flux" else ClassifierFreeGuidance
    assert isinstance(guided, expected)


def test_flux_dev_guidance_is_an_input(spaces):
    """with_guidance hands the scale to the distilled model, also at 1 (no second pass)."""
    space = spaces["flux"]
    (c,) = space.condition(["a cat"])
    x = torch.randn(space.latent_shape(1, 32), generator=torch.Generator().manual_seed(0))
    calls = []
    space.denoiser.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    with torch.no_grad():
        u1 = with_guidance(space.denoiser, 1.0, space.null_cond())(x, 0.5, c)
        u3 = with_guidance(space.denoiser, 3.5, space.null_cond())(x, 0.5, c)
        raw = space.denoiser(x, 0.5, c)  # a raw call embeds the default 3.5
    assert calls == [1, 1, 1]  # one single-row pass each: no classifier-free doubling
    assert float((u1 - u3).abs().max()) > 1e-4
    torch.testing.assert_close(raw, u3, rtol=0, atol=0)


def test_offload_keeps_one_network_on_the_device(saved):
    """With offload, every network is used from home and moved in when used (on this CPU
    machine home and device coincide; the bookkeeping is what is checked)."""
    space = load_pipeline(saved["flux"], offload=True)
    assert space.offload.enabled and space.offload.resident is None
    (c,) = space.condition(["a cat"])
    assert space.offload.resident is space.text_encoder_2  # CLIP, then T5
    z = space.encode_image(torch.zeros(1, 3, 32, 32))
    assert space.offload.resident is space.vae
    with torch.no_grad():
        space.denoiser(z, 0.5, c)
    assert space.offload.resident is space.transformer
    moves = space.offload.moves
    with torch.no_grad():
        space.denoiser(z, 0.4, c)  # the denoiser stays: no move between steps
    assert space.offload.moves == moves
    space.decode_latents(z)
    assert space.offload.resident is space.vae and space.offload.moves == moves + 1
