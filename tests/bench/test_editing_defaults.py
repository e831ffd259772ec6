"""The rule that picks ``nidiff edit``'s pixel defaults from editing-benchmark rows
(nidiff.bench.editing_defaults), on synthetic rows, and the registry against the committed
benchmark results it was chosen from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nidiff.bench.editing_defaults import choose, choose_all, defaults_of, main, rows_of
from nidiff.methods import PIXEL_DEFAULTS

RESULTS = sorted((Path(__file__).parents[2] / "docs" / "results").glob("editing-defaults-*.json"))


def row(s, acc, ssim, bg=20.0, w=3.0, method="EF", pair="pooled"):
    return {"pair": pair, "method": method, "setting": f"s = {s}", "param": s, "n": 72,
            "accuracy": acc, "ssim": ssim, "bg_psnr": bg, "guidance": w, "side": 28}  # fmt: skip


def result(rows, w):
    return {"config": {"guidance": w}, "examples": {"size": [28, 28]}, "rows": rows}


def test_most_faithful_point_that_reaches_the_accuracy():
    rows = [row(0.3, 0.5, 0.9), row(0.5, 0.92, 0.6), row(0.7, 0.99, 0.4), row(0.9, 1.0, 0.2)]
    assert choose(rows)["param"] == 0.5
    assert choose(rows, min_accuracy=0.95)["param"] == 0.7
    tie = [row(0.5, 0.95, 0.6, bg=25.0), row(0.6, 0.95, 0.6, bg=26.0)]
    assert choose(tie)["param"] == 0.6  # equal SSIM: the better background


def test_higher_guidance_only_where_the_lower_never_reaches_it():
    low = [row(0.5, 0.85, 0.7), row(0.9, 0.93, 0.3)]
    high = [row(0.5, 0.95, 0.65, w=5.0), row(0.7, 0.99, 0.5, w=5.0)]
    assert (choose(low + high)["param"], choose(low + high)["guidance"]) == (0.9, 3.0)
    short = [row(0.5, 0.85, 0.7), row(0.9, 0.88, 0.3)]
    assert (choose(short + high)["param"], choose(short + high)["guidance"]) == (0.5, 5.0)


def test_most_accurate_point_where_none_reaches_it():
    rows = [row(0.5, 0.3, 0.9), row(0.9, 0.6, 0.7), row(0.9, 0.6, 0.5, w=5.0)]
    assert choose(rows) is rows[1]  # equal accuracy: the lower guidance
    with pytest.raises(ValueError, match="no rows"):
        choose([])


def test_rows_become_the_registrys_options():
    assert defaults_of(row(0.6, 1, 1, method="EF")) == {"skip_frac": 0.4}
    assert defaults_of(row(0.7, 1, 1, w=5.0, method="NGDM+EF")) == {
        "strength": 0.7,
        "guidance": 5.0,
    }
    assert defaults_of(row(0.3, 1, 1, method="SDEdit")) == {"strength": 0.3}
    assert defaults_of(row(7, 1, 1, method="ILVR")) == {"factor_frac": 0.25}


def test_choose_all_reads_the_pooled_rows_of_each_run():
    g3 = result([row(0.5, 0.95, 0.6), row(0.5, 0.0, 0.99, pair="Sneaker → Sandal"),
                 row(None, 1.0, 1.0, method="source"), row(0.9, 0.5, 0.5, method="DDIM inv.")],
                3.0)  # fmt: skip
    g5 = result([row(0.7, 0.91, 0.4, method="DDIM inv.")], 5.0)
    assert len(rows_of([g3, g5])) == 3  # pooled method rows only
    chosen = choose_all([g3, g5])
    assert list(chosen) == ["ef", "ddim"]
    assert defaults_of(chosen["ddim"]) == {"skip_frac": 0.3, "guidance": 5.0}


def test_the_registry_is_the_choice_on_the_committed_results(capsys):
    """PIXEL_DEFAULTS is what the rule picks from the benchmark runs in docs/results."""
    assert RESULTS, "docs/results/editing-defaults-*.json are missing"
    chosen = choose_all([json.loads(p.read_text()) for p in RESULTS])
    assert {name: defaults_of(r) for name, r in chosen.items()} == PIXEL_DEFAULTS
    main([str(p) for p in RESULTS])
    assert str(PIXEL_DEFAULTS) in capsys.readouterr().out
