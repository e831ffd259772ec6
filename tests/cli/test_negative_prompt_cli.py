"""``--negative-prompt`` and ``--true-cfg`` through ``nidiff edit`` and ``nidiff sample`` on the
tiny offline pipelines: recorded in OUT.json, they change the result, and they are refused with
one line where they do not apply (pixel models; true CFG off guidance-distilled FLUX).
(That the guided model is the pipelines' own: ``tests/models/test_family_crosscheck.py``.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")

import tiny_families
from cli_calls import bad, ok, record

from nidiff.bundled import ASSETS

SOURCE, TARGET = "a photo of a cat", "a photo of a dog"
FAST = ["--steps", "3", "--size", "32", "--device", "cpu", "--seed", "1"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Tiny SD 1.x, SDXL, FLUX.1-dev and FLUX.1-schnell pipelines and a photo."""
    root = tmp_path_factory.mktemp("negative_prompt_cli")
    for family in ("sd", "sdxl", "flux"):
        tiny_families.save_tiny(family, root)
    schnell = tiny_families.save_tiny("flux", root / "schnell", guidance_embeds=False)
    schnell.rename(root / "flux-schnell")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "photo.png")
    return root


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img, dtype=np.int16)


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_edit_with_a_negative_prompt(work, family):
    plain, negative = work / f"{family}-plain.png", work / f"{family}-negative.png"
    args = ["edit", work / "photo.png", "--model", work / family, "-s", SOURCE, "-t", TARGET,
            "--method", "sdedit", *FAST]  # fmt: skip
    ok(*args, "--out", plain)
    ok(*args, "--negative-prompt", "blurry, low quality", "--out", negative)
    assert record(negative)["model"]["negative_prompt"] == "blurry, low quality"
    assert record(plain)["model"]["negative_prompt"] == ""
    assert np.abs(pixels(negative) - pixels(plain)).max() > 0  # guided away from it


def test_sample_flux_with_true_cfg(work):
    plain, true_cfg = work / "flux-plain.png", work / "flux-true-cfg.png"
    args = ["sample", "--model", work / "flux", "-n", "1", "--class", TARGET, *FAST]
    ok(*args, "--out", plain)
    ok(*args, "--true-cfg", "2.5", "--negative-prompt", "blurry", "--out", true_cfg)
    model = record(true_cfg)["model"]
    assert model["true_cfg"] == 2.5 and model["negative_prompt"] == "blurry"
    assert record(plain)["model"]["true_cfg"] == 1.0
    assert np.abs(pixels(true_cfg) - pixels(plain)).max() > 0


def test_edit_flux_with_true_cfg_reconstructs(work):
    """EF with true CFG: the same guided model inverts and regenerates, so the identity edit
    (target = source at the inversion's guidance, no skip) gives back the input's latents as
    exactly as without it (the decoded PNGs agree to a grey level)."""
    outs = {}
    for name, extra in (("off", []), ("on", ["--true-cfg", "2", "--negative-prompt", "blurry"])):
        outs[name] = work / f"flux-identity-{name}.png"
        ok("edit", work / "photo.png", "--model", work / "flux", "-s", SOURCE, "-t", SOURCE,
           "--method", "ef", "--skip", "0", "--guidance", "1.5", "--source-guidance", "1.5",
           *FAST, *extra, "--out", outs[name])  # fmt: skip
    assert record(outs["on"])["model"]["true_cfg"] == 2.0
    assert np.abs(pixels(outs["on"]) - pixels(outs["off"])).max() <= 1


def test_refused_where_they_do_not_apply(work):
    out = work / "refused.png"
    photo = ASSETS / "examples" / "shirt-0.png"
    bad("edit", photo, "-s", "shirt", "-t", "t-shirt", "--negative-prompt", "x", "--out", out,
        match="--negative-prompt is for text-to-image pipelines", out=out)  # fmt: skip
    bad("sample", "-n", "1", "--true-cfg", "2", "--out", out,
        match="--true-cfg is for text-to-image pipelines", out=out)  # fmt: skip
    bad("sample", "--model", work / "sd", "-n", "1", "--class", TARGET, "--true-cfg", "2",
        *FAST, "--out", out, match="on sd pipelines --guidance is classifier", out=out)  # fmt: skip
    bad("sample", "--model", work / "flux-schnell", "-n", "1", "--class", TARGET, "--true-cfg",
        "2", *FAST, "--out", out, match="has no guidance embedding", out=out)  # fmt: skip
    bad("sample", "--model", work / "flux", "-n", "1", "--true-cfg", "0.5", *FAST, "--out", out,
        match="--true-cfg", out=out)  # fmt: skip
