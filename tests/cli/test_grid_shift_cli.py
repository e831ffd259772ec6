"""``--shift-grid S`` in ``nidiff edit`` and ``nidiff invert`` (issue 14): the model's grid moved
toward high noise, recorded, replayed exactly by ``regenerate``; bad input (a shift on a
rectified-flow model, a step count whose shifted times collide, a shift out of range) is one
line, exit 2, nothing written. Multistep solvers take every step count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_calls import bad, ok, record
from PIL import Image

from nidiff.bundled import ASSETS

IMAGE = ASSETS / "examples" / "sneaker-0.png"
EDIT = ["edit", IMAGE, "--method", "ef", "-s", "sneaker", "-t", "sandal", "--device", "cpu"]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img, dtype=np.int16)


def test_edit_and_invert_walk_the_shifted_grid(tmp_path):
    plain, shifted = tmp_path / "plain.png", tmp_path / "shifted.png"
    ok(*EDIT, "--steps", "3", "--skip", "0", "--out", plain)
    ok(*EDIT, "--steps", "3", "--skip", "0", "--shift-grid", "2", "--out", shifted)
    assert record(shifted)["resolved"]["grid_shift"] == 2.0
    assert record(plain)["resolved"]["grid_shift"] == 1.0
    assert np.abs(pixels(plain) - pixels(shifted)).max() > 0  # another grid, another edit
    inv = tmp_path / "inv.safetensors"
    ok("invert", IMAGE, "-s", "sneaker", "--steps", "3", "--shift-grid", "3", "--out", inv)
    # the leading grid 667, 334, 1 moved by u -> 3u/(1 + 2u) of t/1000
    assert record(inv)["resolved"]["grid"] == [857.0, 601.0, 3.0]
    back = tmp_path / "back.png"
    ok("regenerate", inv, "--out", back)  # the file keeps its grid: exact reconstruction
    assert np.abs(pixels(back) - pixels(IMAGE)).max() <= 1


def test_multistep_solvers_take_every_step_count(tmp_path):
    for steps in ("1", "2"):
        out = tmp_path / f"dpm{steps}.png"
        ok(*EDIT, "--sampler", "dpm++2m-sde", "--steps", steps, "--skip", "0", "--out", out)
        assert record(out)["nfe"] == int(steps) * 2  # inversion + unguided regeneration


@pytest.mark.parametrize("command", ["edit", "invert"])
def test_a_shift_whose_times_collide_is_refused_before_any_work(tmp_path, command):
    out = tmp_path / ("e.png" if command == "edit" else "i.safetensors")
    args = EDIT if command == "edit" else ["invert", IMAGE, "-s", "sneaker"]
    bad(*args, "--steps", "900", "--shift-grid", "50", "--out", out,
        match="--shift-grid 50 with --steps 900", out=out)  # fmt: skip


@pytest.mark.parametrize("value", ["0", "-1", "nan", "101"])
def test_a_shift_out_of_range_is_refused(tmp_path, value):
    out = tmp_path / "e.png"
    bad(*EDIT, "--shift-grid", value, "--out", out, match="--shift-grid", out=out)


def test_a_shift_on_a_rectified_flow_model_is_refused(tmp_path):
    import tiny_families

    model = tiny_families.save_tiny("sd3", tmp_path)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(photo)
    fast = ["--model", model, "--steps", "2", "--size", "32", "--device", "cpu"]
    for command in ("edit", "invert"):
        out = tmp_path / ("e.png" if command == "edit" else "i.safetensors")
        args = [command, photo, "-s", "a cat", *fast, "--shift-grid", "2", "--out", out]
        if command == "edit":
            args += ["--method", "ef", "-t", "a dog"]
        bad(*args, match="--shift-grid applies to variance-preserving", out=out)
