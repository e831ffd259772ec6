"""SDXL, SD3 and FLUX through the ``nidiff`` command line (``--model DIR``), on the tiny offline
pipelines of ``tests/support/tiny_families.py`` (VAE factor 2: 32² images ↔ 16² latents):
exact edit-friendly reconstruction, every editing method end to end, sampling with the
family's defaults, and bad input refused with one line (exit 2, nothing written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("diffusers")

import tiny_families
from cli_calls import bad, ok, record

from nidiff.methods import METHODS

FAMILIES = ("sdxl", "sd3", "flux")
SOURCE, TARGET = "a photo of a cat", "a photo of a dog"
FAST = ["--steps", "4", "--size", "32", "--device", "cpu"]
#: Each family's default guidance (FLUX.1-dev: its distilled guidance) and inversion guidance.
GUIDANCE = {"sdxl": 5.0, "sd3": 7.0, "flux": 3.5}
SOURCE_GUIDANCE = {"sdxl": 3.5, "sd3": 3.5, "flux": 1.5}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder holding the tiny pipelines (``sdxl/``, ``sd3/``, ``flux/``) and a photo."""
    root = tmp_path_factory.mktemp("family_cli")
    for family in FAMILIES:
        tiny_families.save_tiny(family, root)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "photo.png")
    return root


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img, dtype=np.int16)


@pytest.mark.parametrize("family", FAMILIES)
def test_invert_then_regenerate_returns_the_encoded_latents(work, family, monkeypatch):
    from nidiff.cli.latent import LatentModel
    from nidiff.inversion import load_inversion
    from nidiff.models.families import load_pipeline

    model = work / family
    inv = work / f"inv-{family}.safetensors"
    ok("invert", work / "photo.png", "--model", model, "-s", SOURCE, *FAST, "--out", inv)
    rec = record(inv)
    assert rec["model"]["family"] == family
    assert rec["resolved"]["guidance"] == SOURCE_GUIDANCE[family]
    assert rec["resolved"]["sampler"]["sampler"] == "ddim"  # DDPM: DDIM η = 1
    decoded: list[torch.Tensor] = []
    to_image = LatentModel.to_image

    def spy(self, x):
        decoded.append(x.clone())
        return to_image(self, x)

    monkeypatch.setattr(LatentModel, "to_image", spy)
    same = work / f"same-{family}.png"
    ok("regenerate", inv, "--out", same, "--device", "cpu")  # the model from the record
    space = load_pipeline(model)
    z0 = space.encode_image(space.load_image(work / "photo.png", 32))
    torch.testing.assert_close(load_inversion(inv).x0, z0, rtol=0, atol=1e-6)
    err = rel(decoded[0], z0)
    print(f"{family}: invert → regenerate through the CLI, relative latent error {err:.1e}")
    assert err <= 1e-5
    assert record(same)["model"]["family"] == family
    edited = work / f"edited-{family}.png"
    ok("regenerate", inv, "-t", TARGET, "--skip", "1", "--out", edited, "--device", "cpu")
    assert rel(decoded[1], z0) > 1e-3 and record(edited)["target_prompt"] == TARGET


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("family", FAMILIES)
def test_every_method_end_to_end(work, family, method):
    out = work / f"edit-{family}-{method}.png"
    args = ["edit", work / "photo.png", "--model", work / family, "-s", SOURCE, "-t", TARGET,
            "--method", method, *FAST, "--seed", "3", "--out", out]  # fmt: skip
    if method == "p2p" and family != "sdxl":  # attention control needs a UNet's processors
        bad(*args, match=f"it runs on sd, sdxl pipelines, not on {family}", out=out)
        return
    if method in ("zero-shot", "zero-shot-ddim", "pnp", "pnp-ddim"):  # SD 1.x/2.x's UNet too
        bad(*args, match=f"it runs on sd pipelines, not on {family}", out=out)
        return
    if method == "flowedit" and family == "sdxl":  # a velocity field: rectified flow only
        bad(*args, match="runs on sd3 and flux pipelines, not on sdxl", out=out)
        return
    if method == "strokes":  # paintings of pixels, noised in pixel space
        bad(*args, match=f"it runs on nidiff's pixel models (e.g. --model default, "
            f"fashion-edge), not on {family} pipelines", out=out)  # fmt: skip
        return
    extra = ["--save-map", work / f"map-{family}-{method}.png"] if METHODS[method].has_map else []
    ok(*args, *extra)
    with Image.open(out) as img:
        assert img.size == (32, 32) and img.mode == "RGB"
    if extra:
        with Image.open(extra[1]) as lam:
            assert lam.size == (16, 16)  # λ / mask on the latent grid (FLUX: unpacked)
    rec = record(out)
    m = rec["model"]
    assert (m["family"], m["size"], m["dtype"]) == (family, 32, "float32")
    assert m["dir"] == str((work / family).resolve())
    assert m["latent_shape"] == [4 if family == "sdxl" else 16, 16, 16]
    assert (rec["source_prompt"], rec["target_prompt"]) == (SOURCE, TARGET)
    r = rec["resolved"]
    guidance = {"sd3": 13.5, "flux": 5.5}[family] if method == "flowedit" else GUIDANCE[family]
    assert r["steps"] == 4 and r["guidance"] == guidance and rec["nfe"] >= 1
    if method == "flowedit":  # FlowEdit's settings: n_max = 33 of 50 (SD3), 24 of 28 (FLUX)
        assert r["source_guidance"] == {"sd3": 3.5, "flux": 1.5}[family] and r["skip"] == 1
        assert rec["nfe"] == 2 * 3 and rec["info"]["n_max"] == 3
    if method in ("ngdm", "ngdm-ef") and family != "sdxl":
        # rectified flow has SNR 0 at t = 1, where NGDM's power rule sends every λ > 0: NGDM
        # starts at the next grid time: 3 of the 4 steps
        assert rec["info"]["steps"] == 3


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_with_the_familys_defaults(work, family):
    out = work / f"sample-{family}.png"
    ok("sample", "--model", work / family, "-n", "2", "--class", TARGET, "--size", "32",
       "--device", "cpu", "--out", out)  # fmt: skip
    rec = record(out)
    assert rec["guidance"] == GUIDANCE[family] and rec["prompt"] == TARGET
    # the sampler equal to the pipeline's scheduler, and its default steps
    own = {"sdxl": ("ddim", 50), "sd3": ("flow-euler", 28), "flux": ("flow-euler", 28)}[family]
    assert (rec["sampler"]["sampler"], rec["nfe"]) == own
    with Image.open(out) as img:
        assert img.size == (70, 36)


def test_offload_and_long_prompts(work):
    out = work / "offload.png"
    result = ok("edit", work / "photo.png", "--model", work / "flux", "-s", SOURCE, "-t",
                "a dog " * 200, "--method", "sdedit", *FAST, "--offload", "--out", out)  # fmt: skip
    assert "Warning:" in result.stderr and "truncated" in result.stderr
    assert "T5" in result.stderr
    assert record(out)["model"]["offload"] is True


def test_bad_input_is_one_line_exit_2_nothing_written(work, tmp_path):
    photo, out = work / "photo.png", tmp_path / "out.png"
    edit = ["edit", photo, "-s", SOURCE, "-t", TARGET, "--method", "sdedit", "--out", out,
            "--device", "cpu"]  # fmt: skip
    other = tmp_path / "kandinsky"
    shutil.copytree(work / "sdxl", other)
    index = json.loads((other / "model_index.json").read_text())
    index["_class_name"] = "KandinskyPipeline"
    (other / "model_index.json").write_text(json.dumps(index))
    r = bad(*edit, "--model", other, match="KandinskyPipeline, which nidiff does not", out=out)
    assert all(f in r.stderr for f in ("sdxl (", "sd3 (", "flux ("))
    for family, component in (("sdxl", "unet"), ("sd3", "vae"), ("flux", "transformer")):
        broken = tmp_path / f"no-{component}"
        shutil.copytree(work / family, broken, ignore=shutil.ignore_patterns(component))
        bad(*edit, "--model", broken, match=f"lacks the component(s) {component}", out=out)
    bad(*edit, "--model", work / "sdxl", "--size", "33",
        match="multiple of the VAE's downsampling factor 2", out=out)  # fmt: skip
    for family, rule in (("sd3", "× patch 2"), ("flux", "× packing 2")):
        bad(*edit, "--model", work / family, "--size", "34", match=rule, out=out)
        inv = tmp_path / "inv.safetensors"
        bad("invert", photo, "-s", SOURCE, "--model", work / family, "--size", "30",
            "--out", inv, match="multiple of 4 on both sides", out=inv)  # fmt: skip
    bad(*edit, "--model", work / "sdxl", "--dtype", "float16", match="float16 needs a CUDA device",
        out=out)  # fmt: skip
    bad(*edit, "--offload", match="--offload is for diffusers pipelines", out=out)
    pixel = ["edit", photo, "-s", "shirt", "-t", "coat", "--out", out, "--steps", "4"]
    bad(*pixel, "--method", "flowedit", match="flowedit needs an SD3 or FLUX pipeline", out=out)


def test_change_maps_in_differential_diffusions_convention(work, tmp_path):
    """``--map``: white = change (λ = 1), black = keep (λ = 0), resized to the latent grid, instead
    of (or times) NGDM's weighting map; ``--save-map`` writes λ the same way, so it reads back."""
    from nidiff.imageio import save_image
    from nidiff.models.families import load_pipeline

    photo = tmp_path / "square.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(photo)
    ramp = tmp_path / "ramp.png"  # left keep, right change, at the latent resolution
    Image.fromarray(np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))).save(ramp)
    black = tmp_path / "black.png"
    Image.new("L", (64, 64), 0).save(black)
    model = ["--model", work / "sd3", *FAST, "-s", SOURCE, "-t", TARGET, "--seed", "2"]
    for method in ("ngdm", "ngdm-ef"):
        kept = tmp_path / f"kept-{method}.png"
        ok("edit", photo, *model, "--method", method, "--map", black, "--out", kept)
        space = load_pipeline(work / "sd3")
        z0 = space.encode_image(space.load_image(photo, 32))
        ref = tmp_path / "ref.png"
        save_image(space.decode_latents(z0)[0], ref)
        diff = np.abs(rgb(kept) - rgb(ref))
        assert diff.max() <= 1  # λ ≡ 0: the source comes back (up to PNG rounding)
        rec = record(kept)  # the map replaced the weighting map: no model calls for it
        assert rec["map"] == str(black) and rec["resolved"]["map_mode"] == "replace"
        assert rec["nfe"] == {"ngdm": 3, "ngdm-ef": 4 + 3}[method]
        saved = tmp_path / f"lam-{method}.png"
        ok("edit", photo, *model, "--method", method, "--map", ramp, "--save-map", saved,
           "--out", tmp_path / f"ramp-{method}.png")  # fmt: skip
        got = np.asarray(Image.open(saved), np.int16)
        want = np.asarray(Image.open(ramp), np.int16)
        assert got.shape == (16, 16) and np.abs(got - want).max() <= 12  # resampled 16→32→16
        assert got[:, 0].max() < 20 and got[:, -1].min() > 235
    computed, times = tmp_path / "computed.png", tmp_path / "times.png"
    white = tmp_path / "white.png"
    Image.new("L", (32, 32), 255).save(white)
    ok("edit", photo, *model, "--method", "ngdm", "--save-map", computed,
       "--out", tmp_path / "a.png")  # fmt: skip
    ok("edit", photo, *model, "--method", "ngdm", "--map", white, "--map-mode", "multiply",
       "--save-map", times, "--out", tmp_path / "b.png")  # fmt: skip
    assert np.array_equal(np.asarray(Image.open(computed)), np.asarray(Image.open(times)))
    out = tmp_path / "bad.png"
    edit = ["edit", work / "photo.png", *model, "--method", "ngdm", "--out", out]
    bad(*edit, "--map", black, match="must have the image's aspect ratio", out=out)  # 48×40
    text = tmp_path / "map.txt"
    text.write_text("not an image")
    bad(*edit, "--map", text, match="map.txt", out=out)
    bad(*edit[:-4], "--method", "sdedit", "--out", out, "--map", black,
        match="--map applies to --method ngdm, ngdm-ef, not sdedit", out=out)  # fmt: skip
    bad(*edit[:-4], "--method", "ef", "--out", out, "--map-mode", "multiply",
        match="--map-mode does not apply to --method ef", out=out)  # fmt: skip
