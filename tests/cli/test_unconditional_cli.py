"""A model trained on an image folder (unconditional) through ``edit``, ``invert`` and
``regenerate``: the methods that need no condition run unguided, the others are one line naming
those that work (the policy is the registry's, :func:`nidiff.methods.check_conditions`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_calls import bad, ok, record
from PIL import Image

from nidiff.bundled import ASSETS
from nidiff.methods import METHODS, check_conditions

WORKS = "sdedit, ilvr, strokes, or ngdm / ngdm-ef with --map FILE"
FAST = ["--steps", "4"]


@pytest.fixture(scope="module")
def folder_model(tmp_path_factory) -> tuple[Path, Path, Path]:
    """``(model dir, a 16×16 grey image, a change map)``: 3 optimiser steps on 6 images."""
    root = tmp_path_factory.mktemp("unconditional")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (20, 16), dtype=np.uint8)).save(images / f"{i}.png")
    ok("train", root / "run", "--noise", "isotropic", "--data", images, "--size", "16",
       "--channels", "8,16", "--batch-size", "4", "--steps", "3", "--warmup", "1")  # fmt: skip
    image = root / "x.png"
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(image)
    change = np.zeros((16, 16), np.uint8)
    change[:, 8:] = 255
    Image.fromarray(change).save(root / "map.png")
    return root / "run" / "model", image, root / "map.png"


@pytest.mark.parametrize(
    "method, extra",
    [("sdedit", []), ("ilvr", []), ("strokes", ["--clusters", "3"]), ("ngdm", ["--map", "map.png"]),
     ("ngdm-ef", ["--map", "map.png", "--save-map", "lam.png"])],
)  # fmt: skip
def test_methods_without_a_condition_run_unguided(folder_model, tmp_path, method, extra):
    model, image, change = folder_model
    extra = [str(change) if a == "map.png" else str(tmp_path / a) if a.endswith(".png") else a
             for a in extra]  # fmt: skip
    out = tmp_path / f"{method}.png"
    ok("edit", image, "--model", model, "--method", method, *FAST, "--out", out, *extra)
    rec = record(out)
    assert Image.open(out).size == (16, 16)
    assert rec["resolved"]["guidance"] == 1.0 and rec["resolved"]["source_guidance"] == 1.0
    assert rec["source_class"] is None and rec["target_class"] is None


@pytest.mark.parametrize(
    "method, extra",
    [("ef", []), ("ngdm-ef", []), ("ddim", []), ("cycle", []), ("diffedit", []), ("ngdm", []),
     ("ngdm", ["--map", "map.png", "--map-mode", "multiply"])],
)  # fmt: skip
def test_methods_that_need_a_condition_name_those_that_work(folder_model, tmp_path, method, extra):
    model, image, change = folder_model
    extra = [str(change) if a == "map.png" else a for a in extra]
    out = tmp_path / "o.png"
    err = bad("edit", image, "--model", model, "--method", method, *FAST, "--out", out, *extra,
              match=WORKS, out=out).stderr  # fmt: skip
    assert "unconditional" in err
    assert ("nidiff invert" in err) == (method in ("ef", "ddim", "cycle"))


def test_conditions_and_guidance_are_refused(folder_model, tmp_path):
    model, image, _ = folder_model
    out = tmp_path / "o.png"
    base = ("edit", image, "--model", model, "--method", "sdedit", *FAST, "--out", out)
    bad(*base, "-t", "sandal", match="takes no --target; leave it out", out=out)
    bad(*base, "-s", "a", "-t", "b", match="takes no --source and --target", out=out)
    bad(*base, "--guidance", "3", match="--guidance 3: classifier-free guidance", out=out)
    ok(*base, "--guidance", "1")
    bad("invert", image, "--model", model, "-s", "shoe", "--out", tmp_path / "i.safetensors",
        match="takes no class")  # fmt: skip


def test_invert_regenerates_exactly_and_manipulates(folder_model, tmp_path):
    model, image, _ = folder_model
    inv = tmp_path / "x.safetensors"
    ok("invert", image, "--model", model, *FAST, "--out", inv)
    assert record(inv)["source_class"] is None
    same = tmp_path / "same.png"
    ok("regenerate", inv, "--out", same)  # the model comes from the inversion's record
    source = np.asarray(Image.open(image), dtype=int)
    assert np.abs(np.asarray(Image.open(same), dtype=int) - source).max() <= 1
    ok("regenerate", inv, "--out", tmp_path / "flip.png", "--flip")
    ok("regenerate", inv, "--out", tmp_path / "shift.png", "--shift", "1,0")
    bad("regenerate", inv, "--out", tmp_path / "t.png", "-t", "3", match="takes no class")
    bad("regenerate", inv, "--out", tmp_path / "g.png", "--guidance", "2",
        match="--guidance 2: classifier-free guidance")  # fmt: skip


def test_batch_of_a_folder_needs_no_condition(folder_model, tmp_path):
    model, image, _ = folder_model
    rows = tmp_path / "in"
    rows.mkdir()
    for name in ("a.png", "b.png"):
        (rows / name).write_bytes(image.read_bytes())
    out = tmp_path / "edits"
    ok("edit", rows, "--model", model, "--method", "sdedit", *FAST, "--out", out)
    assert sorted(p.name for p in out.glob("*.png")) == ["a-sdedit.png", "b-sdedit.png"]
    bad("edit", rows, "--model", model, "--method", "sdedit", "-t", "x", *FAST, "--out",
        tmp_path / "e2", match="row 1")  # fmt: skip


def test_class_models_need_only_the_conditions_a_method_uses(tmp_path):
    """On the bundled class model SDEdit and ILVR need only the target, NGDM with a replacing
    map too; the rest need both, and invert its source."""
    src = ASSETS / "examples" / "sneaker-0.png"
    out = tmp_path / "s.png"
    ok("edit", src, "--method", "sdedit", "-t", "sandal", *FAST, "--out", out)
    assert record(out)["source_class"] is None and record(out)["target_class"] == 5
    bad("edit", src, "--method", "ef", "-t", "sandal", *FAST, "--out", tmp_path / "e.png",
        match="--method ef needs --source: default is conditional")  # fmt: skip
    bad("edit", src, "--method", "sdedit", *FAST, "--out", tmp_path / "e.png",
        match="needs --target")  # fmt: skip
    bad("invert", src, *FAST, "--out", tmp_path / "i.safetensors", match="--source is required")


def test_the_policy_is_the_registrys():
    free = {n for n, m in METHODS.items() if not m.text_only and "source" not in m.conditions}
    assert free == {"sdedit", "ilvr", "strokes"}
    for name, info in METHODS.items():
        mapped = info.takes_user_map
        if name in free or mapped:
            check_conditions(name, conditional=False, given=(), user_map=mapped)
        else:
            with pytest.raises(ValueError, match=WORKS):
                check_conditions(name, conditional=False, given=(), user_map=True)
    assert METHODS["ngdm"].required_conditions(True, "multiply") == ("source", "target")
    assert METHODS["ngdm"].required_conditions(True) == ("target",)
