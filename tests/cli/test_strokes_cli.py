"""``nidiff edit --method strokes``: stroke-guided editing (EP paper Sec. 5) on the bundled pixel
models: the k-means painting of IMAGE (``--clusters``, ``--stroke-blur``) or ``--painting
FILE``, SDEdited at ``--strength`` with the model's own forward process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_calls import bad, ok, record
from PIL import Image

from nidiff.bundled import ASSETS
from nidiff.methods import STROKES_EP

SNEAKER = ASSETS / "examples" / "sneaker-0.png"
FAST = ["--method", "strokes", "--steps", "4"]


def grey(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L"), dtype=np.int16)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("strokes")


@pytest.fixture(scope="module")
def default_edit(work) -> tuple[Path, Path]:
    """An edit at the defaults (bundled default model) and the painting it started from."""
    out, painting = work / "edit.png", work / "painting.png"
    ok("edit", SNEAKER, "-t", "sandal", *FAST, "--seed", "5", "--out", out,
       "--save-painting", painting)  # fmt: skip
    return out, painting


def test_an_edit_writes_the_image_its_record_and_its_painting(default_edit):
    out, painting = default_edit
    assert grey(out).shape == grey(painting).shape == (28, 28)
    rec = record(out)
    assert rec["method"] == "strokes" and rec["info"]["method"] == "strokes"
    assert rec["seed"] == 5 and rec["nfe"] == rec["info"]["steps"] >= 1
    assert rec["outputs"] == {"image": str(out), "map": None, "painting": str(painting)}
    # the defaults are nidiff bench edge's (the EP paper's hijack time 0.55)
    r = rec["resolved"]
    assert (r["strength"], r["clusters"], r["stroke_blur"]) == (0.55, 4, 1.0)
    assert STROKES_EP == {"strength": 0.55, "clusters": 4, "stroke_blur": 1.0}
    assert rec["info"]["clusters"] == 4 and rec["info"]["painting_seed"] == 5
    assert len(np.unique(grey(painting))) <= 4
    assert not (grey(out) == grey(painting)).all()


def test_the_same_seed_gives_the_same_bytes(work, default_edit):
    out, painting = default_edit
    again, again_painting = work / "again.png", work / "again-painting.png"
    ok("edit", SNEAKER, "-t", "sandal", *FAST, "--seed", "5", "--out", again,
       "--save-painting", again_painting)  # fmt: skip
    assert again.read_bytes() == out.read_bytes()
    assert again_painting.read_bytes() == painting.read_bytes()


def test_clusters_and_stroke_blur_change_the_painting(work, default_edit):
    _, painting = default_edit
    two, sharp = work / "two.png", work / "sharp.png"
    ok("edit", SNEAKER, "-t", "sandal", *FAST, "--seed", "5", "--clusters", "2",
       "--out", work / "e2.png", "--save-painting", two)  # fmt: skip
    ok("edit", SNEAKER, "-t", "sandal", *FAST, "--seed", "5", "--stroke-blur", "0",
       "--out", work / "e0.png", "--save-painting", sharp)  # fmt: skip
    assert len(np.unique(grey(two))) <= 2
    assert not (grey(sharp) == grey(painting)).all()
    info = record(work / "e2.png")["info"]
    assert (info["clusters"], info["blur"]) == (2, 1.0)
    assert record(work / "e0.png")["info"]["blur"] == 0.0


def test_a_given_painting_at_a_low_strength_comes_back(work, default_edit):
    """SDEdit from the grid's last times (here t <= 20 of 1000, one step) adds almost no noise:
    the edit is the painting up to a few grey levels; at the default strength it is not."""
    _, painting = default_edit
    low, high = work / "low.png", work / "high.png"
    ok("edit", SNEAKER, "-t", "sandal", "--method", "strokes", "--painting", painting,
       "--steps", "50", "--strength", "0.02", "--out", low)  # fmt: skip
    ok("edit", SNEAKER, "-t", "sandal", "--method", "strokes", "--painting", painting,
       "--steps", "10", "--out", high)  # fmt: skip
    rec = record(low)
    assert rec["painting"] == str(painting) and rec["info"]["clusters"] == 0
    assert rec["info"]["painting_seed"] is None and rec["nfe"] == 1
    near = np.abs(grey(low) - grey(painting))
    assert near.mean() < 2 and near.max() <= 8
    assert np.abs(grey(high) - grey(painting)).mean() > 5 * near.mean()


def test_the_edge_preserving_model_runs_it(work):
    out = work / "edge.png"
    ok("edit", SNEAKER, "-t", "sneaker", *FAST, "--model", "fashion-edge", "--out", out)
    rec = record(out)
    assert rec["model"]["name"] == "fashion-edge" and rec["model"]["process"] == "edge"
    assert grey(out).shape == (28, 28)


def test_a_painting_of_the_wrong_size_is_refused(work):
    small = work / "small.png"
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(small)
    out, saved = work / "refused.png", work / "refused-painting.png"
    bad("edit", SNEAKER, "-t", "sandal", *FAST, "--painting", small, "--out", out,
        "--save-painting", saved,
        match=f"--painting {small} is 24×20, IMAGE {SNEAKER} is 28×28", out=out)  # fmt: skip
    assert not saved.exists()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--method", "sdedit", "--painting", SNEAKER], "--painting applies to --method strokes"),
        (["--method", "ef", "-s", "sneaker", "--save-painting", "p.png"],
         "--save-painting applies to --method strokes, not ef"),
        (["--method", "sdedit", "--clusters", "3"],
         "--clusters does not apply to --method sdedit; it applies to strokes"),
        (["--method", "strokes", "--painting", SNEAKER, "--stroke-blur", "0"],
         "--stroke-blur makes the painting from IMAGE"),
    ],
)  # fmt: skip
def test_options_of_the_painting_are_for_strokes(work, args, match):
    out = work / "o.png"
    bad("edit", SNEAKER, "-t", "sandal", "--steps", "4", *args, "--out", out, match=match, out=out)
