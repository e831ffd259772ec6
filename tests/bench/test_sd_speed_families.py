"""``nidiff bench sd-speed`` on SDXL, SD3 and FLUX: the full-size configs (counted on the meta
device), every family's code path end to end on its tiny architecture (``--preset tiny``), the
memory refusal before building, the CLI's ``--family``. Wall-clock numbers are not asserted."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from cli_calls import bad, ok

from nidiff.bench import _sd_families, sd_speed
from nidiff.bench._sd_families import ARCHITECTURES, check_memory, parameter_count

STEPS = 2
TINY = sd_speed.replace(sd_speed.PRESETS["tiny"], steps=STEPS)


@pytest.fixture(scope="module", params=["sdxl", "sd3", "flux"])
def result(request) -> dict:
    return sd_speed.run(preset=TINY, family=request.param)


def test_full_configs_have_the_published_parameter_counts():
    full = {f: parameter_count(a) for f, a in ARCHITECTURES["full"].items()}
    # SDXL base's UNet, SD3 medium's MMDiT, FLUX.1-dev's transformer (diffusers' configs).
    assert full["sdxl"]["network"] == 2_567_463_684
    assert full["sd3"]["network"] == 2_028_328_000
    assert full["flux"]["network"] == 11_901_408_320
    # CLIP-L + bigG (with projection); SD3/FLUX add T5-XXL (4.7 B; small letter vocabularies).
    assert 0.70e9 < full["sdxl"]["text"] < 0.72e9
    assert 4.6e9 < full["flux"]["text"] < 4.8e9
    assert all(80e6 < c["vae"] < 85e6 for c in full.values())


def test_each_family_runs_its_methods_with_their_known_calls(result):
    cfg = result["config"]
    family, rows = cfg["family"], {r["method"]: r for r in result["rows"]}
    s = sd_speed.settings(family, STEPS)
    guided = 1 if family == "flux" else 2  # FLUX.1-dev: distilled guidance, batch 1
    if family == "sdxl":
        assert list(rows) == ["NGDM", "EF", sd_speed.EF_SDE, "LEDITS++"]
        assert rows["NGDM"]["calls"] == {"2": STEPS, "20": 1}
        ledits_calls = {"1": STEPS, "2": STEPS}  # unguided inversion, uncond + one concept
        assert rows[sd_speed.EF_SDE]["calls"] == rows["LEDITS++"]["calls"] == ledits_calls
        assert cfg["ledits"]["pipeline"] == "LEditsPPPipelineStableDiffusionXL"
        assert set(result["ratios"]) == {f"{m}/LEDITS++" for m in rows if m != "LEDITS++"}
    else:
        assert list(rows) == ["NGDM", "EF", "FlowEdit"]
        # NGDM starts at the grid's first time of positive SNR (t = 1 is pure noise).
        assert rows["NGDM"]["calls"] == {str(guided): STEPS - 1, "20": 1}
        n_max = STEPS - s.flowedit_skip
        assert rows["FlowEdit"]["calls"] == {str(guided): 2 * n_max}
        assert cfg["flowedit"]["n_max"] == n_max and "ledits" not in cfg
        assert set(result["ratios"]) == {"NGDM/FlowEdit", "EF/FlowEdit"}
    assert rows["EF"]["calls"] == {str(guided): 2 * STEPS - s.ef_skip}
    for r in rows.values():
        assert r["median_s"] > 0 and 0 < r["unet_s"] < r["median_s"]
        assert r["vae_s"] > 0 and r["text_s"] > 0 and 0 < r["unet_share"] <= 1
    assert (cfg["size"], cfg["steps"], cfg["arch"]) == (32, STEPS, "tiny")
    assert cfg["params_m"]["network"] > 0
    json.dumps(result, allow_nan=False)
    text = sd_speed.markdown(result)
    assert text.startswith(f"Seconds per edit, family {family}: tiny ")
    assert " M parameters: " in text.splitlines()[0]


def test_flowedit_published_settings_in_the_full_preset():
    assert sd_speed.settings("sd3", 50).flowedit_skip == 17  # n_max 33
    assert sd_speed.settings("flux", 28).flowedit_skip == 4  # n_max 24
    assert sd_speed.PRESETS["full"].steps is None  # the family's: SD3 50, FLUX 28


def test_memory_refusal_names_the_estimate_before_building(monkeypatch):
    flux = ARCHITECTURES["full"]["flux"]
    huge = replace(flux, network={**flux.network, "num_single_layers": 400})

    def never(*args, **kwargs):
        raise AssertionError("built a pipeline that does not fit")

    monkeypatch.setattr(_sd_families, "build_space", never)
    with pytest.raises(ValueError, match=r"B parameters alone take ~\d+.* GiB, more than the"):
        sd_speed.run(preset=sd_speed.PRESETS["quick"], arch=huge)
    with pytest.raises(ValueError, match=r"~44\.7 GiB, more than the 24\.0 GiB available on cpu"):
        check_memory("x", 12 * 10**9, sd_speed.DTYPES["float32"], sd_speed.torch.device("cpu"),
                     available=lambda device: 24 * 2**30)  # fmt: skip
    assert check_memory("x", 10**9, sd_speed.DTYPES["bfloat16"], sd_speed.torch.device("cpu"),
                        available=lambda device: 24 * 2**30) == 2 * 10**9  # fmt: skip


@pytest.mark.parametrize(
    "fields",
    [{"family": "sd4"}, {"family": "sd3", "methods": ("LEDITS++",)},
     {"family": "flux", "t5": False}, {"family": "sd3", "size": 40},
     {"arch": "huge", "family": "sdxl"}],
)  # fmt: skip
def test_bad_family_settings_fail_before_building(fields):
    with pytest.raises(ValueError):
        sd_speed.run(preset=replace(TINY, **fields))


def test_cli_family_option_and_set_field(tmp_path):
    out = tmp_path / "r.json"
    ok("bench", "sd-speed", "--preset", "tiny", "--family", "sd3", "--set", "steps=2",
       "--json", out, "--quiet")  # fmt: skip
    res = json.loads(out.read_text())
    assert res["config"]["family"] == "sd3" and res["preset"] == "tiny, steps=2, family=sd3"
    bad("bench", "editing", "--family", "sdxl", match="has no model families")
    bad("bench", "sd-speed", "--preset", "tiny", "--set", "family=sd4", match="family='sd4'")


def test_tiny_preset_runs_sd_too_with_its_memory_estimate():
    from nidiff.bench._sd_families import sd_parameter_count
    from nidiff.bench._sd_random import SD15

    assert sd_parameter_count(SD15)["network"] == 859_520_964  # SD 1.5's UNet
    res = sd_speed.run(preset=TINY)
    assert res["config"]["family"] == "sd" and res["config"]["architecture"].startswith("tiny")
    assert [r["method"] for r in res["rows"]] == list(sd_speed.METHODS)
