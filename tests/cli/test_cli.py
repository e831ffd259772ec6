"""End-to-end tests of the ``nidiff`` command line on the bundled model at tiny step counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_calls import bad, ok, record, run
from PIL import Image

from nidiff.bundled import ASSETS
from nidiff.cli.edit import METHODS

SNEAKER = ASSETS / "examples" / "sneaker-0.png"
STEPS = ["--steps", "3"]


def grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.int16)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


# ---- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [None, "edit", "invert", "regenerate", "sample"])
def test_help_lists_options_with_defaults(command):
    out = ok(*([command] if command else []), "--help").output
    if command is None:
        for name in ("edit", "invert", "regenerate", "sample"):
            assert name in out
    else:
        assert "--out" in out and "[default:" in out
    if command == "edit":
        for opt in ("--method", "--strength", "--skip", "--factor", "--eta", "--save-map"):
            assert opt in out
        assert "default: ngdm" in out and "round(0.3 × steps)" in out


# ---- every command end to end -----------------------------------------------------------------


@pytest.mark.parametrize("method", [n for n, m in METHODS.items() if not m.text_only])
def test_edit_each_method(work, method):
    out = work / f"edit-{method}.png"
    extra = ["--save-map", work / f"map-{method}.png"] if method in ("ngdm", "diffedit") else []
    ok("edit", SNEAKER, "-s", "sneaker", "-t", "sandal", "--method", method, *STEPS, "--seed",
       "7", "--out", out, *extra)  # fmt: skip
    assert grey(out).shape == (28, 28)
    rec = record(out)
    assert rec["seed"] == 7 and rec["method"] == method and rec["params"]["steps"] == 3
    assert rec["nfe"] >= 1 and rec["seconds"] > 0 and rec["torch"] and rec["nidiff"]
    if extra:
        lam = grey(extra[1])
        assert lam.shape == (28, 28) and lam.min() >= 0 and lam.max() <= 255


def test_edit_is_reproducible_by_seed(work):
    a, b = work / "seed-a.png", work / "seed-b.png"
    for out in (a, b):
        ok("edit", SNEAKER, "-s", "sneaker", "-t", "sandal", *STEPS, "--out", out)
    assert (grey(a) == grey(b)).all()


def test_invert_then_regenerate(work):
    inv = work / "inv.safetensors"
    ok("invert", SNEAKER, "--source", "sneaker", "--out", inv, *STEPS, "--seed", "3")
    assert record(inv)["seed"] == 3 and record(inv)["method"] == "edit_friendly"
    same = work / "same.png"
    ok("regenerate", inv, "--out", same)  # the inversion's own class and guidance
    assert np.abs(grey(same) - grey(SNEAKER)).max() <= 1
    assert record(same)["model"]["name"] == "default"  # read from the inversion's record
    ok("regenerate", inv, "--target", "sandal", "--guidance", "3", "--skip", "1",
       "--out", work / "sandal.png")  # fmt: skip
    ok("regenerate", inv, "--shift", "2,0", "--flip", "--out", work / "moved.png")
    mask = work / "mask.png"
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(mask)
    ok("regenerate", inv, "--color-mask", mask, "--color", SNEAKER, "--out", work / "col.png")
    assert record(work / "col.png")["method"] == "ef_color"


def test_sample_grid(work):
    out = work / "grid.png"
    ok("sample", "--num", "4", "--class", "bag", *STEPS, "--seed", "1", "--out", out)
    assert grey(out).shape == (62, 62)  # 2 × 2 tiles of 28 with 2-pixel padding
    rec = record(out)
    assert rec["seed"] == 1 and rec["labels"] == [8, 8, 8, 8]


# ---- bad inputs: exit 2, one line, nothing written ----------------------------------------------


def test_missing_and_non_image_files(work):
    out = work / "never.png"
    bad("edit", work / "nope.png", "-s", "sneaker", "-t", "sandal", "--out", out,
        match="does not exist")  # fmt: skip
    text = work / "text.png"
    text.write_text("not an image")
    bad("edit", text, "-s", "sneaker", "-t", "sandal", "--out", out, match="not a readable image")
    bad("regenerate", work / "nope.safetensors", "--out", out, match="does not exist")
    bad("regenerate", text, "--out", out, match="not a readable nidiff inversion")
    assert not out.exists() and not (work / "never.png.json").exists()


def test_wrong_size_needs_resize(work):
    big = work / "big.png"
    Image.open(SNEAKER).resize((32, 32)).save(big)
    out = work / "big-edit.png"
    bad("edit", big, "-s", "sneaker", "-t", "sandal", *STEPS, "--out", out,
        match="model expects 28×28; pass --resize")  # fmt: skip
    assert not out.exists()
    ok("edit", big, "-s", "sneaker", "-t", "sandal", *STEPS, "--method", "sdedit", "--resize",
       "--out", out)  # fmt: skip
    assert grey(out).shape == (28, 28)


def test_unknown_class_lists_valid_names(work):
    out = work / "cls.png"
    r = bad("edit", SNEAKER, "-s", "sneaker", "-t", "spaceship", "--out", out, match="spaceship")
    assert "Ankle boot" in r.stderr
    bad("sample", "--class", "spaceship", "--out", out, match="valid names")
    assert not out.exists()


def test_skip_must_be_below_steps(work):
    out = work / "skip.png"
    bad("edit", SNEAKER, "-s", "sneaker", "-t", "sandal", "--method", "ef", *STEPS,
        "--skip", "3", "--out", out, match="--skip=3 must be < --steps=3")  # fmt: skip
    inv = work / "skip-inv.safetensors"
    ok("invert", SNEAKER, "-s", "sneaker", *STEPS, "--out", inv)
    bad("regenerate", inv, "--skip", "3", "--out", out, match="skip=3 must be < steps=3")
    bad("regenerate", inv, "--skip", "1", "--flip", "--out", out, match="--skip 0")
    bad("regenerate", inv, "--shift", "1", "--out", out, match="DX,DY")
    assert not out.exists() and not (work / "skip.png.json").exists()


def test_existing_output_and_input_are_not_overwritten(work):
    out = work / "exists.png"
    out.write_bytes(b"keep me")
    for cmd in (
        ["edit", SNEAKER, "-s", "sneaker", "-t", "sandal", *STEPS],
        ["invert", SNEAKER, "-s", "sneaker", *STEPS],
        ["sample", "--num", "1", *STEPS],
    ):
        bad(*cmd, "--out", out, match="pass --overwrite")
    assert out.read_bytes() == b"keep me"
    copy = work / "input.png"
    copy.write_bytes(SNEAKER.read_bytes())
    bad("edit", copy, "-s", "sneaker", "-t", "sandal", "--out", copy, "--overwrite",
        match="is an input file")  # fmt: skip
    assert copy.read_bytes() == SNEAKER.read_bytes()
    ok("sample", "--num", "1", *STEPS, "--out", out, "--overwrite")
    assert grey(out).shape == (32, 32)


def test_missing_models_are_refused(work):
    out = work / "m.png"
    bad("edit", SNEAKER, "-s", "a", "-t", "b", "--model", work / "no-model", "--out", out,
        match="does not exist")  # fmt: skip
    bad("sample", "--model", "fashion-nope", "--out", out, match="does not exist")
    assert not out.exists()


# ---- batch mode ---------------------------------------------------------------------------------


@pytest.fixture
def csv_rows(tmp_path) -> Path:
    for name in ("sneaker-0.png", "shirt-0.png"):
        (tmp_path / name).write_bytes((ASSETS / "examples" / name).read_bytes())
    table = tmp_path / "rows.csv"
    table.write_text("image,source,target\nsneaker-0.png,sneaker,sandal\nshirt-0.png,shirt,tee\n")
    return table


def test_batch_csv_resumes_and_shards(csv_rows, monkeypatch):
    out = csv_rows.parent / "edits"
    args = ("edit", csv_rows, "--method", "sdedit", *STEPS, "--seed", "5", "--out", out)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # rows[1::2]: the shirt only
    ok(*args)
    assert sorted(p.name for p in out.glob("*.png")) == ["shirt-0-sdedit-tee.png"]
    rec = record(out / "shirt-0-sdedit-tee.png")
    assert rec["seed"] == 6 and rec["row"]["index"] == 1 and rec["row"]["target"] == "tee"
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    before = (out / "shirt-0-sdedit-tee.png").stat().st_mtime_ns
    r = ok(*args)
    assert "1 already there" in r.output  # the re-run skips the existing output
    assert (out / "shirt-0-sdedit-tee.png").stat().st_mtime_ns == before
    assert (out / "sneaker-0-sdedit-sandal.png").exists()


def test_batch_folder_and_bad_rows(csv_rows):
    out = csv_rows.parent / "folder-edits"
    ok("edit", csv_rows.parent, "-s", "top", "-t", "coat", "--method", "sdedit", *STEPS,
       "--out", out)  # fmt: skip
    assert len(list(out.glob("*-sdedit-coat.png"))) == 2
    csv_rows.write_text("sneaker-0.png,sneaker,sandal\nshirt-0.png,shirt,spaceship\n")
    r = bad("edit", csv_rows, "--on-error", "stop", "--out", csv_rows.parent / "none",
            match="row 2")  # fmt: skip
    assert "spaceship" in r.stderr
    assert not (csv_rows.parent / "none").exists()  # every row is checked before any is written


def test_internal_error_exits_1_and_writes_nothing(work, monkeypatch):
    import nidiff.cli.edit as edit_module

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(edit_module, "run_method", broken)
    out = work / "broken.png"
    result = run("edit", SNEAKER, "-s", "sneaker", "-t", "sandal", *STEPS, "--out", out)
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)
    assert not out.exists() and not (work / "broken.png.json").exists()


def test_regenerate_finds_a_model_directory_from_the_record(work):
    from nidiff.bundled import model_dir

    inv = work / "dir-inv.safetensors"
    ok("invert", SNEAKER, "-s", "sneaker", *STEPS, "--model", model_dir(), "--out", inv)
    out = work / "dir-regen.png"
    ok("regenerate", inv, "--out", out)
    assert record(out)["model"]["dir"] == str(model_dir().resolve())
