"""The Stable Diffusion speed benchmark: SD 1.x's architecture (checked on the meta device), all
three methods timed on a tiny random pipeline, and the table on a fake result. Wall-clock
numbers are not asserted."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from nidiff.bench import sd_speed
from nidiff.bench._sd_random import SD15, Architecture, build_tokenizer

#: The tiny configs of ``tests/support/tiny_sd.py`` with a third UNet level, every level with
#: cross-attention: LEDITS++ reads cross-attention maps at 1/4 of the latent side.
TINY = Architecture(
    "tiny",
    unet={
        "sample_size": 8, "in_channels": 4, "out_channels": 4,
        "block_out_channels": (32, 32, 64), "layers_per_block": 1,
        "down_block_types": ("CrossAttnDownBlock2D",) * 3,
        "up_block_types": ("CrossAttnUpBlock2D",) * 3,
        "cross_attention_dim": 32, "attention_head_dim": 8, "norm_num_groups": 32,
    },
    vae={
        "in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * 2,
        "up_block_types": ("UpDecoderBlock2D",) * 2, "block_out_channels": (32, 64),
        "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 32, "sample_size": 32,
    },
    text={
        "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
        "num_hidden_layers": 2, "max_position_embeddings": 77,
    },
)  # fmt: skip
STEPS = 3


@pytest.fixture(scope="module")
def result() -> dict:
    preset = sd_speed.Preset(size=32, steps=STEPS, repeats=2, warmup=1)
    return sd_speed.run(preset=preset, arch=TINY, device="cpu")


def test_sd15_configs_build_sd15_sized_networks():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    def params(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15.unet)
        vae = AutoencoderKL(**SD15.vae)
        text = CLIPTextModel(CLIPTextConfig(**SD15.text, vocab_size=49408))
    # SD 1.5's published parameter counts (with CLIP's 49,408-token vocabulary).
    assert (params(unet), params(vae), params(text)) == (859_520_964, 83_653_863, 123_060_480)
    assert unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1) == 512
    assert vae.config.scaling_factor == 0.18215
    assert SD15.scheduler["beta_schedule"] == "scaled_linear"
    assert (SD15.scheduler["beta_start"], SD15.scheduler["beta_end"]) == (0.00085, 0.012)
    assert build_tokenizer().model_max_length == 77


def test_run_times_all_three_methods_with_their_known_nfe(result):
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["NGDM", "EF", "LEDITS++"]
    skip = round(0.36 * STEPS)
    assert result["config"]["ef"]["skip"] == skip
    # NGDM: map of 10 draws x (source, target) in one call, then one guided call per step.
    assert rows["NGDM"]["calls"] == {"2": STEPS, "20": 1}
    assert rows["EF"]["calls"] == {"2": STEPS + STEPS - skip}
    assert {m: rows[m]["nfe"] for m in ("NGDM", "EF")} == sd_speed.nidiff_nfe(STEPS)
    assert sd_speed.nidiff_nfe(STEPS) == {"NGDM": 20 + 2 * STEPS, "EF": 4 * STEPS - 2 * skip}
    # LEDITS++: unguided inversion (no source prompt), then uncond + one concept per step.
    assert rows["LEDITS++"]["calls"] == {"1": STEPS, "2": STEPS}
    assert rows["LEDITS++"]["nfe"] == 3 * STEPS
    for r in rows.values():
        assert len(r["seconds"]) == 2 and r["median_s"] > 0
        assert 0 < r["unet_s"] < r["median_s"] and r["vae_s"] > 0 and r["text_s"] > 0
        assert 0 < r["unet_share"] <= 1
    for key, m in (("NGDM/LEDITS++", "NGDM"), ("EF/LEDITS++", "EF")):
        ratio = result["ratios"][key]
        assert math.isfinite(ratio) and ratio > 0
        assert ratio == pytest.approx(rows[m]["median_s"] / rows["LEDITS++"]["median_s"])
    cfg = result["config"]
    assert (cfg["size"], cfg["steps"], cfg["repeats"], cfg["warmup"]) == (32, STEPS, 2, 1)
    assert cfg["latent"] == [4, 16, 16] and cfg["dtype"] == "float32"
    json.dumps(result, allow_nan=False)  # JSON-safe


def test_ledits_edit_restores_the_unets_attention_processors():
    from nidiff.bench._sd_random import random_components
    from nidiff.models.stable_diffusion import StableDiffusion

    sd = StableDiffusion(**random_components(TINY), device="cpu")
    before = {k: type(v) for k, v in sd.unet.attn_processors.items()}
    pipe = sd_speed._ledits_pipeline(sd)
    image = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        out = sd_speed._methods(sd, pipe, image, steps=2, seed=0)["LEDITS++"]()
    assert out.shape == (1, 3, 32, 32)
    assert {k: type(v) for k, v in sd.unet.attn_processors.items()} == before


@pytest.mark.parametrize(
    "kwargs",
    [{"size": 48}, {"steps": 0}, {"repeats": 0}, {"dtype": "float64"}],
)
def test_run_rejects_bad_settings_before_building(kwargs):
    with pytest.raises(ValueError):
        sd_speed.run(preset=sd_speed.PRESETS["quick"], **kwargs)


def test_presets():
    assert sd_speed.PRESETS["full"] == sd_speed.Preset(size=None, steps=None, repeats=3, warmup=1)
    assert sd_speed.PRESETS["full"].family == "sd"  # SD 1.x: 512², 50 steps
    assert sd_speed.PRESETS["quick"].repeats == 1


def fake_result() -> dict:
    def row(method: str, s: float, nfe: int, calls: dict, share: float) -> dict:
        return {"method": method, "seconds": [s], "median_s": s, "nfe": nfe, "calls": calls,
                "unet_s": share * s, "vae_s": 0.5, "text_s": 0.01, "unet_share": share}  # fmt: skip

    config = {
        "architecture": "SD 1.x architecture, random weights", "size": 512, "steps": 50,
        "latent": [4, 64, 64], "dtype": "float16", "device": "cuda", "hardware": "GPU X",
        "threads": 16, "repeats": 3, "warmup": 1, "torch": "2.x", "diffusers": "0.42.1",
        "ngdm": {"map_draws": 10, "map_strength": 0.5, "guidance": 7.5},
        "ef": {"source_guidance": 3.5, "guidance": 15.0, "skip": 18},
        "ledits": {"scheduler": "sde-dpmsolver++ (2nd order)", "skip": 0.15,
                   "editing_prompt": ["dog"]},
    }  # fmt: skip
    rows = [
        row("NGDM", 6.0, 120, {"2": 50, "20": 1}, 0.9),
        row("EF", 8.0, 164, {"2": 82}, 0.8),
        row("LEDITS++", 4.0, 150, {"1": 50, "2": 50}, 0.5),
    ]
    return {"rows": rows, "ratios": {"NGDM/LEDITS++": 1.5, "EF/LEDITS++": 2.0}, "config": config}


def test_markdown_cells():
    text = sd_speed.markdown(fake_result())
    lines = text.splitlines()
    assert lines[0].startswith(
        "Seconds per edit, family sd: SD 1.x architecture, random weights, 512² (50 steps, latent "
        "4×64×64), float16 on GPU X (cuda), 16 threads; median of 3 after 1 warm-up"
    )
    assert "| NGDM | 6 | 1.50 | 120 | 50×2, 1×20 | 5.4 | 45.0 | 0.5 | 0.01 | 0.90 |" in lines
    assert "| EF | 8 | 2.00 | 164 | 82×2 | 6.4 | 39.0 | 0.5 | 0.01 | 0.80 |" in lines
    assert "| LEDITS++ | 4 | 1.00 | 150 | 50×1, 50×2 | 2 | 13.3 | 0.5 | 0.01 | 0.50 |" in lines
    assert "regeneration from skip 18 (guidance 15)" in text


def test_ef_with_ledits_solver_runs_at_ledits_nfe():
    """EF + DPM++ SDE (opt-in) on LEDITS++'s grid: an unguided inversion and a guided
    regeneration over the same N steps, the same UNet calls as LEDITS++ (issue 14)."""
    preset = sd_speed.Preset(size=32, steps=STEPS, repeats=1, warmup=0)
    methods = (sd_speed.EF_SDE, "LEDITS++")
    result = sd_speed.run(preset=preset, arch=TINY, device="cpu", methods=methods)
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == list(methods)
    assert rows[sd_speed.EF_SDE]["calls"] == rows["LEDITS++"]["calls"] == {"1": STEPS, "2": STEPS}
    assert rows[sd_speed.EF_SDE]["nfe"] == sd_speed.ef_sde_nfe(STEPS) == rows["LEDITS++"]["nfe"]
    assert list(result["ratios"]) == [f"{sd_speed.EF_SDE}/LEDITS++"]
    assert result["config"]["ef_sde"]["sampler"] == "dpm++2m-sde"
    assert "LEDITS++'s NFE" in sd_speed.markdown(result)
    with pytest.raises(ValueError, match="choose among"):
        sd_speed.run(preset=preset, arch=TINY, methods=("EF", "Pix2Pix"))
