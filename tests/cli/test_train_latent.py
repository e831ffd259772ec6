"""``nidiff train --vae``: a tiny random ``AutoencoderKL``, each noise trained on its latents of
the digits (16×16 → 4×8×8), the latent cache (reused by a second run, resumed after a killed
encoding), a training resumed after a kill, sampling and editing through the VAE (exact
edit-friendly reconstruction of the latents), and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("accelerate")
pytest.importorskip("sklearn")

import torch
from cli_calls import bad, ok, record
from PIL import Image
from tiny_vae import save_tiny_vae

from nidiff.training.checkpoint import load_model

TINY = ["--data", "digits", "--size", "16", "--channels", "8,16", "--batch-size", "8",
        "--warmup", "1", "--checkpoint-every", "12"]  # fmt: skip
STEPS = ["--steps", "24"]
FAST = ["--steps", "4"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A VAE, a latent cache, a 16×16 grey image; the isotropic run trained first (fresh cache)."""
    root = tmp_path_factory.mktemp("latent")
    save_tiny_vae(root / "vae")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / "x.png")
    ok("train", root / "isotropic", "--noise", "isotropic", "--vae", root / "vae",
       "--latent-cache", root / "cache", *TINY, *STEPS)  # fmt: skip
    return root


def _vae_args(work: Path) -> list:
    return ["--vae", work / "vae", "--latent-cache", work / "cache"]


def _trained(work: Path, noise: str) -> Path:
    """``work/NOISE``: trained with ``noise`` on the latents (once per module)."""
    out = work / noise
    if not (out / "model").is_dir():
        ok("train", out, "--noise", noise, *_vae_args(work), *TINY, *STEPS)
    return out


class EncoderCalls:
    """Counts ``AutoencoderKL.encode`` calls (the images it encoded)."""

    def __init__(self, monkeypatch):
        from diffusers import AutoencoderKL

        self.images, encode = 0, AutoencoderKL.encode

        def counted(vae, x, *args, **kwargs):
            self.images += len(x)
            return encode(vae, x, *args, **kwargs)

        monkeypatch.setattr(AutoencoderKL, "encode", counted)


@pytest.mark.parametrize("noise", ["isotropic", "gff", "edge"])
def test_each_noise_trains_on_the_latents_and_samples_through_the_vae(work, noise):
    from nidiff.cli.model import load_cli_model
    from nidiff.cli.vae_model import VaeModel

    out = _trained(work, noise)
    model = load_model(out / "model", expect_kind=noise)
    cfg = model.config
    assert cfg["step"] == 24 and cfg["model"]["in_channels"] == 4
    assert cfg["model"]["sample_size"] == 8 and cfg["data"]["size"] == 16
    assert cfg["vae"]["path"] == str((work / "vae").resolve())
    assert cfg["vae"]["latent_channels"] == 4 and len(cfg["vae"]["sha256"]) == 64
    if noise == "edge":  # EP App. E: the latent-space edge sensitivity
        assert cfg["process"]["noise"]["lambda_min"] == 1e-5
    m = load_cli_model(str(out / "model"))
    assert isinstance(m, VaeModel) and m.factor == 2 and m.shape(3) == (3, 4, 8, 8)
    grid = work / f"samples-{noise}.png"
    ok("sample", "--model", out / "model", "--num", "4", *FAST, "--out", grid)
    assert Image.open(grid).size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2)  # 2×2 tiles, padding 2
    assert record(grid)["model"]["kind"] == "latent"


def test_a_second_run_reads_the_latents_from_the_cache(work, monkeypatch):
    first = json.loads((work / "isotropic" / "train.json").read_text())["latents"]
    assert first["encoded"] == 1797 and first["cached"] == 0
    calls = EncoderCalls(monkeypatch)
    out = work / "second"
    ok("train", out, "--noise", "gff", *_vae_args(work), *TINY, "--steps", "2")
    second = json.loads((out / "train.json").read_text())["latents"]
    assert calls.images == 0 and second["encoded"] == 0 and second["cached"] == 1797
    assert second["cache"] == first["cache"]
    print(f"encoding the digits: {first['seconds']} s first run, {second['seconds']} s from cache")


def test_a_killed_encoding_resumes_at_the_missing_chunks(work, tmp_path, monkeypatch):
    from nidiff.models.vae import VaeCodec
    from nidiff.training.latent import encode_dataset

    cache = tmp_path / "cache"
    shutil.copytree(work / "cache", cache)
    (key,) = list(cache.iterdir())
    chunks = sorted(key.glob("chunk-*"))
    assert len(chunks) == 8  # 1797 images in chunks of 256
    chunks[3].unlink()  # killed before chunk 3 was written ...
    chunks[5].write_bytes(chunks[5].read_bytes()[:100])  # ... or one of another run truncated
    calls = EncoderCalls(monkeypatch)
    ok("train", tmp_path / "run", "--noise", "isotropic", "--vae", work / "vae", "--latent-cache",
       cache, *TINY, "--steps", "1")  # fmt: skip
    assert calls.images == 2 * 256
    from nidiff.data.digits import digits

    full = encode_dataset(digits(16)[0], VaeCodec(work / "vae"), work / "cache")
    again = encode_dataset(digits(16)[0], VaeCodec(work / "vae"), cache)
    assert again.encoded == 0 and torch.equal(full.modes, again.modes)


def test_a_killed_training_resumes_with_its_vae(work, tmp_path):
    out = tmp_path / "run"
    args = ["train", out, "--noise", "edge", *_vae_args(work), *TINY, "--lr-schedule", "constant"]
    ok(*args, "--steps", "12")
    for done in ("model", "train.json", "train_log.json"):  # kill -9 after the last checkpoint
        shutil.rmtree(out / done, ignore_errors=True)
        (out / done).unlink(missing_ok=True)
    ok(*args, "--steps", "24", "--resume")
    rec = json.loads((out / "train.json").read_text())
    assert rec["resumed_from"] == "step-0000012" and rec["step"] == 24
    assert [(s["start_step"], s["end_step"]) for s in rec["segments"]] == [(0, 12), (12, 24)]
    assert (
        load_model(out / "model").config["vae"] == load_model(work / "edge" / "model").config["vae"]
    )
    # the resumed run equals one trained straight through (a constant rate: the cosine one
    # depends on --steps)
    straight = tmp_path / "straight"
    ok("train", straight, *args[2:], "--steps", "24")
    a, b = (load_model(d / "model").network.state_dict() for d in (out, straight))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("noise", ["isotropic", "gff", "edge"])
def test_ngdm_and_ef_edit_and_ef_reconstructs_the_latents_exactly(work, monkeypatch, noise):
    from nidiff.cli.vae_model import VaeModel
    from nidiff.inversion import load_inversion

    model = _trained(work, noise) / "model"
    for method in ("ngdm", "ef"):
        out = work / f"edit-{noise}-{method}.png"
        ok("edit", work / "x.png", "--model", model, "--method", method, "-s", "1", "-t", "7",
           *FAST, "--out", out)  # fmt: skip
        assert Image.open(out).size == (16, 16) and record(out)["target_class"] == 7
    decoded: list[torch.Tensor] = []
    to_image = VaeModel.to_image

    def spy(self, x):
        decoded.append(x.clone())
        return to_image(self, x)

    monkeypatch.setattr(VaeModel, "to_image", spy)
    inv = work / f"inv-{noise}.safetensors"
    ok("invert", work / "x.png", "--model", model, "-s", "1", *FAST, "--out", inv)
    ok("regenerate", inv, "--out", work / f"same-{noise}.png")
    m = VaeModel(str(model))
    z0 = m.load_image(work / "x.png", resize=False)
    assert torch.equal(load_inversion(inv).x0, z0)
    err = float((decoded[0] - z0).abs().max())
    print(f"invert → regenerate on the {noise} latent model: max latent error {err:.1e}")
    assert err <= 1e-5
    ok("regenerate", inv, "-t", "3", "--skip", "1", "--out", work / f"edited-{noise}.png")
    assert float((decoded[1] - z0).abs().max()) > 1e-3


def test_latent_scale_std_gives_unit_spread(work, tmp_path):
    out = tmp_path / "std"
    ok("train", out, "--noise", "isotropic", *_vae_args(work), "--latent-scale", "std", *TINY,
       "--steps", "1")  # fmt: skip
    scaling = load_model(out / "model").config["vae"]["scaling"]
    assert scaling["source"] == "std" and scaling["shift"] == 0.0
    from nidiff.data.digits import digits
    from nidiff.models.vae import LatentScaling, VaeCodec

    codec = VaeCodec(work / "vae", scaling=LatentScaling.from_dict(scaling))
    z = codec.encode(digits(16)[0].expand(-1, 3, -1, -1))
    assert float(z.std()) == pytest.approx(1.0, abs=1e-4)
    bad("train", out, "--noise", "isotropic", *_vae_args(work), *TINY, "--steps", "2",
        "--resume", match="--latent-scale vae")  # fmt: skip


# ---- bad input ---------------------------------------------------------------------------


def test_a_directory_that_is_not_an_autoencoder_is_exit_2(work, tmp_path):
    out = tmp_path / "out"
    unet = work / "isotropic" / "model"  # a nidiff model, not a VAE
    fake = tmp_path / "unet"
    fake.mkdir()
    (fake / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    for vae, match in ((fake, "holds a UNet2DModel, not an AutoencoderKL"),
                       (unet, "names no _class_name, not an AutoencoderKL"),
                       (tmp_path / "nowhere", "is not a directory"),
                       (work / "x.png", "is a file")):  # fmt: skip
        bad("train", out, "--noise", "gff", "--vae", vae, "--latent-cache", tmp_path / "c",
            *TINY, match=match)  # fmt: skip
        assert not out.exists() and not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("extra", "match"),
    [(["--size", "9"], "multiple of the VAE's downsampling factor 2"),
     (["--sample-every", "5"], "--sample-every"),
     (["--rgb"], "folders only")],
)  # fmt: skip
def test_bad_latent_training_options_are_exit_2(work, tmp_path, extra, match):
    out = tmp_path / "out"
    bad("train", out, "--noise", "gff", "--vae", work / "vae", "--latent-cache", tmp_path / "c",
        *TINY, *extra, match=match)  # fmt: skip
    assert not out.exists() and not (tmp_path / "c").exists()


def test_latent_options_without_vae_are_exit_2(tmp_path):
    bad("train", tmp_path / "o", "--noise", "gff", *TINY, "--latent-scale", "std",
        match="with --vae only")  # fmt: skip


def test_a_vae_of_another_channel_count_is_exit_2(work, tmp_path):
    other = save_tiny_vae(tmp_path / "vae8", latent_channels=8)
    # resuming a latent run with another VAE: nothing written
    run = tmp_path / "run"
    shutil.copytree(work / "isotropic", run)
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    record_before = (run / "train.json").read_bytes()
    bad("train", run, "--noise", "isotropic", "--vae", other, "--latent-cache", tmp_path / "c",
        *TINY, "--steps", "30", "--resume", match="latent_channels 4")  # fmt: skip
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before
    assert (run / "train.json").read_bytes() == record_before and not (tmp_path / "c").exists()
    bad("train", run, "--noise", "isotropic", *TINY, "--steps", "30", "--resume",
        match="pass --vae")  # fmt: skip
    # a latent model whose config points at a VAE of 8 channels: sample and edit refuse it
    model = tmp_path / "model"
    shutil.copytree(work / "isotropic" / "model", model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["vae"]["path"] = str(other)
    (model / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "s.png"
    err = bad("sample", "--model", model, "--num", "2", *FAST, "--out", out,
              match="trained with a VAE of latent_channels 4", out=out).stderr  # fmt: skip
    assert "has latent_channels 8" in err
    out = tmp_path / "e.png"
    bad("edit", work / "x.png", "--model", model, "--method", "ngdm", "-s", "1", "-t", "7",
        *FAST, "--out", out, match="latent_channels 4", out=out)  # fmt: skip
    # the same channels but other weights: refused too
    save_tiny_vae(tmp_path / "vae4", latent_channels=4, seed=1)
    cfg["vae"]["path"] = str(tmp_path / "vae4")
    (model / "config.json").write_text(json.dumps(cfg))
    bad("sample", "--model", model, "--num", "2", *FAST, "--out", out,
        match="trained with another VAE", out=out)  # fmt: skip
