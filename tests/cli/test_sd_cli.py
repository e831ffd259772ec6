"""Stable Diffusion through the ``nidiff`` command line, on the tiny offline pipeline of
``tests/support/tiny_sd.py`` (VAE factor 2: 32² images ↔ 16² latents)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import tiny_sd
from cli_calls import bad, ok, record, run

from nidiff.cli.methods import METHODS

SOURCE, TARGET = "a photo of a cat", "a photo of a dog"
FAST = ["--steps", "4", "--size", "32", "--device", "cpu"]


def rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "RGB"
        return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A work folder holding the tiny pipeline (``pipeline/``) and a 48×40 photo."""
    root = tmp_path_factory.mktemp("sd_cli")
    tiny_sd.save_tiny_pipeline(root)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "photo.png")
    return root


# ---- every command end to end -----------------------------------------------------------------


@pytest.mark.parametrize("method", list(METHODS))
def test_edit_each_method(work, method):
    out = work / f"edit-{method}.png"
    if method == "flowedit":  # rectified-flow models only (tests/cli/test_family_cli.py)
        bad("edit", work / "photo.png", "--model", work / "pipeline", "-s", SOURCE, "-t", TARGET,
            "--method", method, *FAST, "--out", out, match="runs on sd3 and flux",
            out=out)  # fmt: skip
        return
    if method == "strokes":  # paintings of pixels, noised in pixel space
        bad("edit", work / "photo.png", "--model", work / "pipeline", "-t", TARGET, "--method",
            method, *FAST, "--out", out, match="it runs on nidiff's pixel models (e.g. --model "
            "default, fashion-edge), not on sd pipelines (Stable Diffusion 1.x/2.x)",
            out=out)  # fmt: skip
        return
    extra = ["--save-map", work / f"map-{method}.png"] if METHODS[method].has_map else []
    # PnP's 1000 inversion steps take a minute on the CPU
    fewer = ["--inversion-steps", "8"] if method == "pnp-ddim" else []
    ok("edit", work / "photo.png", "--model", work / "pipeline", "-s", SOURCE, "-t", TARGET,
       "--method", method, *FAST, "--seed", "5", "--out", out, *extra, *fewer)  # fmt: skip
    assert rgb(out).shape == (32, 32, 3)
    if extra:
        with Image.open(extra[1]) as lam:
            assert lam.size == (16, 16)  # λ / mask at latent resolution
    rec = record(out)
    assert rec["model"]["kind"] == "stable-diffusion"
    assert rec["model"]["dir"] == str((work / "pipeline").resolve())
    assert rec["model"]["latent_shape"] == [4, 16, 16]
    assert (rec["source_prompt"], rec["target_prompt"]) == (SOURCE, TARGET)
    assert rec["resolved"]["steps"] == 4 and rec["nfe"] >= 1
    # the papers' defaults, else SD's 7.5, not 3
    expected_guidance = {"ef": 15.0, "p2p": 9.0, "pnp": 10.0, "pnp-ddim": 10.0}.get(method, 7.5)
    assert rec["resolved"]["guidance"] == expected_guidance


def test_ef_follows_the_paper_unless_told(work, monkeypatch):
    import nidiff.cli.edit as edit_module

    seen = {}

    def stop(*args, **opts):
        seen.update(opts)
        raise KeyboardInterrupt  # click: exit 1, nothing written

    edit = ["edit", work / "photo.png", "--model", work / "pipeline", "-s", SOURCE, "-t", TARGET,
            "--method", "ef", "--size", "32", "--device", "cpu"]  # fmt: skip
    with monkeypatch.context() as patched:
        patched.setattr(edit_module, "run_method", stop)
        run(*edit, "--out", work / "ef-none.png")
    assert (seen["steps"], seen["skip"]) == (100, 36)
    out = work / "ef-paper.png"
    ok(*edit, "--steps", "10", "--out", out)
    r = record(out)["resolved"]
    assert (r["guidance"], r["source_guidance"], r["eta"], r["skip"]) == (15.0, 3.5, 1.0, 4)
    out2 = work / "ef-told.png"
    ok("edit", work / "photo.png", "--model", work / "pipeline", "-s", SOURCE, "-t", TARGET,
       "--method", "ef", *FAST, "--guidance", "2", "--skip", "1", "--out", out2)  # fmt: skip
    r = record(out2)["resolved"]
    assert (r["guidance"], r["source_guidance"], r["skip"]) == (2.0, 3.5, 1)
    assert "--skip 36 of 100" in ok("edit", "--help").output.replace("\n  ", " ")


def test_p2p_follows_the_paper_and_takes_its_options(work):
    out = work / "p2p-paper.png"
    ok("edit", work / "photo.png", "--model", work / "pipeline", "-s", SOURCE, "-t",
       "a photo of a tiger", "--method", "p2p", "--size", "32", "--device", "cpu", "--steps",
       "10", "--cross-replace", "0.5", "--reweight", "tiger=2", "--out", out)  # fmt: skip
    rec = record(out)
    r = rec["resolved"]
    assert (r["guidance"], r["source_guidance"], r["eta"], r["skip"]) == (9.0, 3.5, 1.0, 1)
    assert (r["cross_replace"], r["self_replace"], r["p2p_mode"]) == (0.5, 0.2, "replace")
    assert r["reweight"] == [["tiger", 2.0]]
    assert rec["nfe"] == 10 + 9  # the inversion, then the 9 steps after the skip


def test_p2p_refuses_pixel_models_and_bad_reweights(work, tmp_path):
    from nidiff.bundled import ASSETS

    out = tmp_path / "p2p.png"
    shirt = ASSETS / "examples" / "shirt-0.png"
    bad("edit", shirt, "-s", "shirt", "-t", "t-shirt", "--method", "p2p", "--steps", "4",
        "--out", out, match="needs a Stable Diffusion pipeline", out=out)  # fmt: skip
    for item in ("tiger", "=2", "tiger=x", "tiger=-1"):
        bad("edit", work / "photo.png", "--model", work / "pipeline", "-s", SOURCE, "-t", TARGET,
            "--method", "p2p", *FAST, "--reweight", item, "--out", out,
            match="expected WORD=FACTOR", out=out)  # fmt: skip


def test_invert_regenerate_reconstructs_the_latents(work, monkeypatch):
    from nidiff.cli.latent import LatentModel
    from nidiff.inversion import load_inversion
    from nidiff.models.stable_diffusion import StableDiffusion

    inv = work / "inv.safetensors"
    ok("invert", work / "photo.png", "--model", work / "pipeline", "-s", SOURCE, *FAST,
       "--out", inv)  # fmt: skip
    rec = record(inv)
    assert rec["source_prompt"] == SOURCE and rec["resolved"]["guidance"] == 3.5
    decoded: list[torch.Tensor] = []
    to_image = LatentModel.to_image

    def spy(self, x):
        decoded.append(x.clone())
        return to_image(self, x)

    monkeypatch.setattr(LatentModel, "to_image", spy)
    same = work / "same.png"
    ok("regenerate", inv, "--out", same, "--device", "cpu")  # model dir from the record
    assert record(same)["model"]["dir"] == str((work / "pipeline").resolve())
    sd = StableDiffusion.from_pretrained(work / "pipeline")
    z0 = sd.encode_image(sd.load_image(work / "photo.png", 32))
    torch.testing.assert_close(load_inversion(inv).x0, z0, rtol=0, atol=1e-6)
    assert (decoded[0] - z0).abs().max() <= 1e-5
    # the PNG is the decoded input latents, quantised the same way
    ref = work / "ref.png"
    from nidiff.imageio import save_image

    save_image(sd.decode_latents(z0)[0], ref)
    assert np.abs(rgb(same) - rgb(ref)).max() <= 1
    ok("regenerate", inv, "-t", TARGET, "--skip", "1", "--out", work / "dog.png")
    assert record(work / "dog.png")["target_prompt"] == TARGET
    mask = work / "mask.png"
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(mask)
    ok("regenerate", inv, "--color-mask", mask, "--color", work / "photo.png",
       "--out", work / "col.png")  # fmt: skip
    assert rgb(work / "col.png").shape == (32, 32, 3)


def test_sample(work):
    out = work / "grid.png"
    ok("sample", "--model", work / "pipeline", "-n", "2", "--class", TARGET, *FAST, "--out", out)
    assert rgb(out).shape == (36, 70, 3)  # 1 × 2 tiles of 32 with 2-pixel padding
    assert record(out)["prompt"] == TARGET
    assert record(out)["guidance"] == 7.5  # Stable Diffusion's scale unless given
    ok("sample", "--model", work / "pipeline", "-n", "1", *FAST, "--out", work / "uncond.png")
    assert record(work / "uncond.png")["prompt"] is None


def test_long_prompt_is_truncated_with_a_warning(work):
    out = work / "long.png"
    result = ok("edit", work / "photo.png", "--model", work / "pipeline", "-s", SOURCE,
                "-t", "a dog " * 40, "--method", "sdedit", *FAST, "--out", out)  # fmt: skip
    assert "Warning:" in result.stderr and "truncated" in result.stderr
    assert out.exists()


# ---- bad inputs: exit 2, one line, nothing written ----------------------------------------------


def test_bad_pipelines_sizes_and_devices(work, tmp_path):
    photo, out = work / "photo.png", tmp_path / "out.png"
    edit = ["edit", photo, "-s", SOURCE, "-t", TARGET, "--method", "sdedit", "--out", out]
    empty = tmp_path / "empty"
    empty.mkdir()
    bad(*edit, "--model", empty, match="nor a diffusers pipeline directory", out=out)
    no_unet = tmp_path / "no-unet"
    shutil.copytree(work / "pipeline", no_unet, ignore=shutil.ignore_patterns("unet"))
    bad(*edit, "--model", no_unet, match="lacks the component(s) unet", out=out)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text("{not json")
    bad(*edit, "--model", broken, match="is not readable JSON", out=out)
    sd = ["--model", work / "pipeline", "--device", "cpu"]
    bad(*edit, *sd, "--size", "33", match="multiple of the VAE's downsampling factor 2", out=out)
    bad(*edit, *sd, "--dtype", "float16", match="float16 needs a CUDA device", out=out)
    inv = tmp_path / "inv.safetensors"
    bad("invert", photo, "-s", SOURCE, *sd, "--size", "31", "--out", inv,
        match="multiple of the VAE", out=inv)  # fmt: skip
    bad("sample", *sd, "--size", "31", "--out", out, match="multiple of the VAE", out=out)
    bad("sample", "--size", "32", "--device", "cpu", "--out", out, match="pixel model", out=out)
    if not torch.cuda.is_available():
        bad(*edit, *sd[:2], "--device", "cuda", match="CUDA is not available", out=out)


def test_batch_csv_of_prompts_with_p2p(work, tmp_path):
    """Batch mode on a pipeline: per-row prompts, one seed per row, the paired P2P method."""
    shutil.copy(work / "photo.png", tmp_path / "a.png")
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "b.png")
    rows = tmp_path / "rows.csv"
    rows.write_text(f"image,source,target\na.png,{SOURCE},{TARGET}\nb.png,{SOURCE},a tiger\n")
    out = tmp_path / "edits"
    bad("edit", rows, "--model", work / "pipeline", "--method", "p2p", *FAST, "--out", out,
        "--on-error", "stop", match="same number of words", out=out)  # fmt: skip
    assert not out.exists()  # every row is checked before any is written
    tiger = "a photo of a tiger"
    rows.write_text(f"image,source,target\na.png,{SOURCE},{TARGET}\nb.png,{SOURCE},{tiger}\n")
    ok("edit", rows, "--model", work / "pipeline", "--method", "p2p", *FAST, "--seed", "3",
       "--out", out)  # fmt: skip
    names = sorted(p.name for p in out.glob("*.png"))
    assert len(names) == 2 and all("-p2p-" in n for n in names)
    recs = [record(out / n) for n in names]
    assert sorted(r["seed"] for r in recs) == [3, 4]
    assert {r["target_prompt"] for r in recs} == {TARGET, tiger}
    assert all(rgb(out / n).shape == (32, 32, 3) for n in names)


# ---- the pipeline's own time grid ---------------------------------------------------------------


@pytest.mark.parametrize("steps", [4, 10, 36])
def test_cli_walks_the_pipelines_own_grid(work, steps):
    """``nidiff invert`` steps through exactly the timesteps diffusers' scheduler visits for the
    same pipeline (its spacing and ``steps_offset``; paper time = timestep + 1)."""
    from diffusers import DDIMScheduler

    from nidiff.inversion import load_inversion

    inv_path = work / f"grid-{steps}.safetensors"
    ok("invert", work / "photo.png", "--model", work / "pipeline", "-s", SOURCE,
       "--steps", str(steps), "--size", "32", "--out", inv_path)  # fmt: skip
    sched = DDIMScheduler.from_pretrained(work / "pipeline", subfolder="scheduler")
    sched.set_timesteps(steps)
    got = load_inversion(inv_path).grid.t - 1
    assert got.tolist() == sched.timesteps.double().tolist()


def test_sample_can_end_where_the_pipeline_does(work):
    """``--final-step pipeline`` ends on the first training step's noise level (DDIM with
    set_alpha_to_one=False), as diffusers' pipeline does; pixel models refuse it."""
    out = work / "final.png"
    ok("sample", "--model", work / "pipeline", "--num", "1", "--sampler", "ddim",
       "--final-step", "pipeline", *FAST, "--out", out)  # fmt: skip
    assert record(out)["params"]["final_step"] == "pipeline"
    bad("sample", "--final-step", "pipeline", "--steps", "2", "--out", work / "no.png",
        match="--final-step pipeline is for Stable Diffusion", out=work / "no.png")  # fmt: skip
