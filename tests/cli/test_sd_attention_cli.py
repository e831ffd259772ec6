"""Zero-Shot I2I and Plug-and-Play (each from EF maps and from DDIM inversion) through
``nidiff edit`` on the tiny offline Stable Diffusion pipeline: the papers' defaults, their
options, the identity edit's exact EF reconstruction, and the refusals (pixel models, a UNet
without attention, options of other methods)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import tiny_sd
from cli_calls import bad, ok, record, run

from nidiff.methods import PNP_EF, PNP_PAPER, ZERO_SHOT_DDIM_PAPER, ZERO_SHOT_PAPER

SOURCE, TARGET = "a photo of a cat", "a photo of a dog"
FAST = ["--steps", "4", "--size", "32", "--device", "cpu"]
METHODS = ("zero-shot", "zero-shot-ddim", "pnp", "pnp-ddim")


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The tiny pipeline (``pipeline/``), the same with a UNet without attention
    (``plain/``) and a 32² photo."""
    root = tmp_path_factory.mktemp("sd_attention_cli")
    tiny_sd.save_tiny_pipeline(root)
    p = tiny_sd.build_tiny_pipeline(root)
    p.register_modules(unet=tiny_sd.build_plain_unet())
    p.save_pretrained(str(root / "plain"))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "photo.png")
    return root


def _edit(work: Path, method: str, *args: str | Path, target: str = TARGET) -> list:
    return ["edit", work / "photo.png", "--model", work / "pipeline", "-s", SOURCE, "-t", target,
            "--method", method, "--size", "32", "--device", "cpu", *args]  # fmt: skip


@pytest.mark.parametrize(
    "method, paper",
    [("zero-shot", ZERO_SHOT_PAPER), ("zero-shot-ddim", ZERO_SHOT_DDIM_PAPER), ("pnp", PNP_EF),
     ("pnp-ddim", PNP_PAPER)],
)  # fmt: skip
def test_defaults_are_the_papers(work, monkeypatch, method, paper):
    """Unset options resolve to the paper's settings (EF paper Tables 3 and 4)."""
    import nidiff.cli.edit as edit_module

    seen = {}

    def stop(*args, **opts):
        seen.update(opts)
        raise KeyboardInterrupt  # click: exit 1, nothing written

    monkeypatch.setattr(edit_module, "run_method", stop)
    run(*_edit(work, method, "--out", work / f"{method}-none.png"))
    assert seen["steps"] == 50 and seen["skip"] == 0
    for name in ("guidance", "source_guidance", "xa_guidance", "feature_replace", "self_replace",
                 "noise_reg_steps", "inversion_steps", "eta"):  # fmt: skip
        if name in paper:
            assert seen[name] == paper[name], name
    assert not (work / f"{method}-none.png").exists()


def test_each_method_takes_its_options(work):
    runs = {
        "zero-shot": ["--xa-guidance", "0.2", "--skip", "1"],
        "zero-shot-ddim": ["--xa-guidance", "0.05", "--noise-reg-steps", "0"],
        "pnp": ["--feature-replace", "0.5", "--self-replace", "0.25", "--guidance", "4"],
        "pnp-ddim": ["--inversion-steps", "8", "--feature-replace", "1"],
    }
    info = {}
    for method, args in runs.items():
        out = work / f"{method}-told.png"
        ok(*_edit(work, method, *FAST[:2], *args, "--seed", "3", "--out", out))
        assert pixels(out).shape == (32, 32, 3)
        info[method] = record(out)
    r = info["zero-shot"]
    assert r["info"]["method"] == "zero_shot_edit_friendly" and r["info"]["xa_guidance"] == 0.2
    assert r["info"]["skip"] == 1 and r["nfe"] == 4 + 2 * 3  # inversion, 3 guided steps
    r = info["zero-shot-ddim"]
    assert r["info"]["method"] == "zero_shot_ddim" and r["info"]["noise_reg_steps"] == 0
    assert r["info"]["source_guidance"] == 1.0 and r["nfe"] == 4 * 4
    r = info["pnp"]
    assert r["info"]["method"] == "pnp_edit_friendly" and r["resolved"]["guidance"] == 4.0
    assert (r["info"]["feature_replace"], r["info"]["self_replace"]) == (0.5, 0.25)
    r = info["pnp-ddim"]
    assert r["info"]["method"] == "pnp_ddim" and r["info"]["inversion_steps"] == 8
    assert r["nfe"] == 8 + 4


@pytest.mark.parametrize("method", ["zero-shot", "pnp"])
def test_identity_edit_reconstructs_like_ef(work, method):
    """Target = source at the inversion's guidance from EF maps: the output is the EF
    reconstruction of the same inversion (same seed), pixel for pixel."""
    args = [*FAST[:2], "--skip", "0", "--guidance", "3.5", "--seed", "2"]
    ef = work / f"ef-identity-{method}.png"
    ok(*_edit(work, "ef", *args, "--out", ef, target=SOURCE))
    out = work / f"{method}-identity.png"
    ok(*_edit(work, method, *args, "--out", out, target=SOURCE))
    assert np.abs(pixels(out) - pixels(ef)).max() <= 1


@pytest.mark.parametrize(
    "method, option",
    [("pnp", "--xa-guidance"), ("pnp", "--inversion-steps"), ("zero-shot", "--feature-replace"),
     ("zero-shot", "--noise-reg-steps"), ("p2p", "--xa-guidance")],
)  # fmt: skip
def test_options_of_other_methods_are_refused(work, method, option):
    out = work / f"refused-{method}.png"
    bad(*_edit(work, method, *FAST, option, "1", "--out", out),
        match=f"{option} does not apply to --method {method}", out=out)  # fmt: skip


@pytest.mark.parametrize("method", [*METHODS, "p2p"])
def test_models_without_attention_are_refused(work, method):
    from nidiff.bundled import ASSETS

    out = work / f"pixel-{method}.png"
    bad("edit", ASSETS / "examples" / "shirt-0.png", "-s", "shirt", "-t", "t-shirt", "--method",
        method, "--steps", "4", "--out", out, match="needs a Stable Diffusion pipeline",
        out=out)  # fmt: skip
    what = "no decoder self-attention" if "pnp" in method else "no cross-attention layers"
    out = work / f"plain-{method}.png"
    r = bad("edit", work / "photo.png", "--model", work / "plain", "-s", SOURCE, "-t", TARGET,
            "--method", method, *FAST, "--out", out, match=what, out=out)  # fmt: skip
    assert f"Error: --method {method}: " in r.stderr
