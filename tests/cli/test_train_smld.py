"""``nidiff train --process smld`` (NI-SMLD, a few steps of a tiny UNet on the digits): the
checkpoint records the VE process, ``nidiff sample`` draws it with annealed Langevin, resume
continues it, and edge noise or another process is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")
pytest.importorskip("accelerate")
pytest.importorskip("sklearn")

from cli_calls import bad, ok, record

from nidiff.models.ve_unet import VEUNetDenoiser
from nidiff.training.checkpoint import load_model
from nidiff.training.processes import SMLD_SIGMAS

TINY = ["--channels", "8,16", "--batch-size", "8", "--warmup", "1", "--checkpoint-every", "3"]
SMLD = ["--process", "smld", "--data", "digits", *TINY]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smld") / "digits"
    ok("train", out, "--noise", "gff", *SMLD, "--steps", "4")
    return out


def test_the_checkpoint_records_the_smld_process(trained):
    model = load_model(trained / "model", expect_kind="gff")
    sigma_max, sigma_min = SMLD_SIGMAS
    assert model.spec.schedule == {"kind": "ve", "sigma_max": sigma_max, "sigma_min": sigma_min}
    assert isinstance(model.denoiser, VEUNetDenoiser)
    assert record(trained / "train")["params"]["process"] == "smld"


def test_sample_uses_annealed_langevin_and_writes_the_grid(trained, tmp_path):
    out = tmp_path / "grid.png"
    ok("sample", "--model", trained / "model", "--num", "4", "--steps", "6", "--out", out)
    rec = record(out)
    assert rec["sampler"] == {"sampler": "langevin", "step_lr": None} and rec["nfe"] == 6
    image = np.asarray(Image.open(out))
    assert image.ndim == 2 and image.shape[0] > 8 and image.std() > 0


def test_resume_continues_the_smld_run(trained):
    ok("train", trained, "--noise", "gff", *SMLD, "--steps", "7", "--resume")
    assert load_model(trained / "model").config["step"] == 7
    rec = json.loads((trained / "train.json").read_text())
    assert rec["resumed_from"] == "step-0000004" and [r["step"] for r in rec["history"]] == [4]
    # the DDPM process cannot continue an SMLD run
    bad("train", trained, "--noise", "gff", "--data", "digits", *TINY, "--steps", "9",
        "--resume", match="cannot resume")  # fmt: skip


def test_edge_noise_is_refused_for_smld(tmp_path):
    out = tmp_path / "edge"
    bad("train", out, "--noise", "edge", *SMLD, "--steps", "2",
        match="--process smld takes isotropic or GFF noise", out=out)  # fmt: skip
    assert not out.exists()
