"""``make demo`` (nidiff.demo) and its figure (nidiff.figure): the registry's defaults, the
classifier's probability under every edit, a title and a colour bar for λ."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from nidiff import demo
from nidiff.figure import COLORMAP_STOPS, colormap, labelled_grid
from nidiff.methods import METHODS, OPTION_NAMES


def test_colormap_ends_and_lightness():
    ends = colormap(np.array([0.0, 1.0, -3.0, 7.0]))
    assert (ends[0] == COLORMAP_STOPS[0]).all() and (ends[1] == COLORMAP_STOPS[-1]).all()
    assert (ends[2] == ends[0]).all() and (ends[3] == ends[1]).all()  # clipped
    lightness = colormap(np.linspace(0, 1, 50)).astype(float) @ [0.299, 0.587, 0.114]
    assert (np.diff(lightness) > 0).all()  # a map reads from dark (0) to light (1)


def test_labelled_grid_title_captions_and_colour_bar(tmp_path):
    rows = [[torch.zeros(1, 4, 4), torch.full((1, 4, 4), 0.5)] for _ in range(2)]
    args = (rows, ["a", "b"], ["r0", "r1"])
    labelled_grid(*args, tmp_path / "plain.png")
    labelled_grid(*args, tmp_path / "full.png", title="T", captions=[["p = 1", ""]] * 2,
                  map_column=1)  # fmt: skip
    plain, full = Image.open(tmp_path / "plain.png"), Image.open(tmp_path / "full.png")
    assert full.width > plain.width and full.height > plain.height
    # the map tile is λ = 0.5 in the colour scale; the image tile stays grey
    pixels = np.asarray(full.convert("RGB"))
    assert (pixels == colormap(np.array(0.5))).all(axis=-1).sum() >= 2 * (4 * 4) ** 2
    assert not (np.asarray(plain.convert("RGB")) == colormap(np.array(0.5))).all(axis=-1).any()


def test_demo_settings_are_nidiff_edits_defaults():
    """The demo's options of each method are those ``nidiff edit`` resolves with no option."""
    from nidiff.cli.edit import edit, resolve_options
    from nidiff.cli.model import load_cli_model

    m = load_cli_model("default", device="cpu")
    with edit.make_context("edit", ["x.png"]) as ctx:
        given = {k: ctx.params[k] for k in OPTION_NAMES if k in ctx.params}
        for name in demo.DEMO_METHODS:
            cli = resolve_options(m, name, given)
            ours = demo.settings(name, cli["steps"])
            assert ours == {k: cli[k] for k in ours}, name


def test_demo_records_the_target_probability_of_every_edit(tmp_path):
    rec = demo.run(tmp_path, steps=4)
    labels = [METHODS[n].label for n in demo.DEMO_METHODS]
    assert list(rec["settings"]) == labels
    assert rec["settings"]["EF"] == demo.settings("ef", 4)
    for e in rec["edits"]:
        assert list(e["results"]) == labels and 0 <= e["source_p_target"] <= 1
        for r in e["results"].values():
            assert 0 <= r["p_target"] <= 1 and r["nfe"] > 0 and r["mse_to_source"] > 0
    figure = Image.open(tmp_path / "demo.png")
    assert figure.height > 3 * 28 * 4 and figure.width > 6 * 28 * 4  # the tiles, and more
