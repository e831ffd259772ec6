"""``--sampler NAME`` through the command line: edit-friendly inversion with DPM-Solver++ SDE and
the other stochastic rules reconstructs exactly; every mismatch is exit 2, one line, nothing
written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_calls import bad, ok, record
from PIL import Image

from nidiff.bundled import ASSETS

SNEAKER = ASSETS / "examples" / "sneaker-0.png"


def grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.int16)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sampler_cli")


@pytest.mark.parametrize("sampler", ["dpm++2m-sde", "euler-ancestral", "ddpm"])
def test_invert_with_a_stochastic_sampler_reconstructs(work, sampler):
    inv = work / f"inv-{sampler}.safetensors"
    ok("invert", SNEAKER, "-s", "sneaker", "--sampler", sampler, "--steps", "8", "--out", inv)
    assert record(inv)["resolved"]["sampler"]["sampler"] == (
        "ddim" if sampler == "ddpm" else sampler
    )
    same = work / f"same-{sampler}.png"
    ok("regenerate", inv, "--out", same)  # the recorded rule, replayed
    assert np.abs(grey(same) - grey(SNEAKER)).max() <= 1
    edit = work / f"sandal-{sampler}.png"
    ok("regenerate", inv, "-t", "sandal", "--skip", "3", "--guidance", "3", "--out", edit)
    assert np.abs(grey(edit) - grey(SNEAKER)).max() > 10


def test_regenerate_refuses_another_sampler(work):
    inv = work / "inv-dpm.safetensors"
    ok("invert", SNEAKER, "-s", "sneaker", "--sampler", "dpm++2m-sde", "--steps", "4", "--out", inv)
    out = work / "other.png"
    bad("regenerate", inv, "--sampler", "ddpm", "--out", out,
        match="recorded with dpm++2m-sde", out=out)  # fmt: skip
    ok("regenerate", inv, "--sampler", "dpm++2m-sde", "--out", out)


@pytest.mark.parametrize(
    ("method", "sampler"),
    [("ef", "dpm++2m-sde"), ("ngdm-ef", "euler-ancestral"), ("ngdm", "heun"), ("sdedit", "dpm++2m"),
     ("ilvr", "dpm++2m-sde")],
)  # fmt: skip
def test_edit_with_any_sampler(work, method, sampler):
    out = work / f"edit-{method}-{sampler}.png"
    ok("edit", SNEAKER, "-s", "sneaker", "-t", "sandal", "--method", method,
       "--sampler", sampler, "--steps", "6", "--out", out)  # fmt: skip
    assert record(out)["info"]["sampler"]["sampler"] == sampler
    assert record(out)["resolved"]["sampler"] == sampler


def test_sample_with_a_solver(work):
    out = work / "grid-dpm.png"
    ok("sample", "--num", "4", "--class", "bag", "--sampler", "dpm++2m", "--steps", "5",
       "--out", out)  # fmt: skip
    assert record(out)["sampler"] == {"sampler": "dpm++2m", "order": 2}
    heun = work / "grid-heun.png"
    ok("sample", "--num", "2", "--sampler", "heun", "--steps", "4", "--out", heun)
    assert record(heun)["nfe"] == 7  # 2 per step, 1 for the step onto clean data


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["invert", SNEAKER, "-s", "sneaker", "--sampler", "heun"],
         "Heun is deterministic"),
        (["invert", SNEAKER, "-s", "sneaker", "--sampler", "dpm++2m"],
         "DPMSolverPP is deterministic"),
        (["edit", SNEAKER, "-s", "sneaker", "-t", "sandal", "--method", "ef", "--sampler", "heun"],
         "Heun is deterministic"),
        (["edit", SNEAKER, "-s", "sneaker", "-t", "sandal", "--method", "ddim", "--sampler",
          "ddpm"], "--sampler does not apply to --method ddim"),
        (["sample", "--sampler", "flow-euler"], "time derivative"),
        (["sample", "--sampler", "sde-euler"], "continuous schedule"),
        (["sample", "--sampler", "dpm++2m-sde", "--eta", "0.5"], "--eta does not apply to"),
        (["sample", "--model", "fashion-edge", "--sampler", "dpm++2m"], "edge-preserving"),
    ],
)  # fmt: skip
def test_mismatches_are_exit_2_before_any_work(work, args, match):
    out = work / "never.png" if args[0] != "invert" else work / "never.safetensors"
    bad(*args, "--steps", "3", "--out", out, match=match, out=out)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["edit"], "Missing argument 'IMAGE'. (see 'nidiff edit --help')"),
        (["edit", SNEAKER, "--steps", "abc"], "Invalid value for '--steps'"),
        (["sample", "--out", "x.png", "--frobnicate"], "No such option '--frobnicate'"),
        (["nope"], "No such command 'nope'"),
    ],
)
def test_usage_errors_are_one_line(args, match):
    """Usage errors read like every other error: one ``Error:`` line naming the option, exit 2
    (not click's three-line usage block)."""
    result = bad(*args, match=match)
    assert result.stderr.strip().count("\n") == 0, result.stderr


def test_an_inversion_of_another_shape_is_refused(work, tmp_path):
    """A 28×28 inversion given to a model of another size (here a tiny 8×8 model with the same
    process) is exit 2 naming both shapes, not a traceback inside the network."""
    import json
    import shutil

    from nidiff.bundled import model_dir

    inv = work / "inv-28.safetensors"
    ok("invert", SNEAKER, "-s", "sneaker", "--steps", "3", "--out", inv)
    small = tmp_path / "small-model"
    shutil.copytree(model_dir("default"), small)
    cfg = json.loads((small / "config.json").read_text())
    cfg.setdefault("data", {})["size"] = 8
    (small / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "never.png"
    bad("regenerate", inv, "--model", small, "--out", out,
        match="holds maps of shape (1, 28, 28), but", out=out)  # fmt: skip
