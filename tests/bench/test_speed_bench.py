"""The speed report: its tables and verdicts on a fake result, its plots, and the throughput
measurement on a tiny setting (the full report runs for minutes and is not run here)."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image
from speed_results import fake_result

from nidiff.bench import speed


def test_verdict_is_pass_up_to_the_goal_inclusive():
    assert speed.verdict(1.05, 1.05) == "PASS"
    assert speed.verdict(1.0500001, 1.05) == "FAIL"
    assert speed.verdict(0.5, 1.05) == "PASS"
    assert speed.verdict(math.nan, 1.05) == "n/a"


def test_markdown_has_three_tables_with_verdicts():
    text = speed.markdown(fake_result())
    lines = text.splitlines()
    assert "| ngdm | 21 | 1.0500 | 1.1053 | ≤ 1.05 | PASS |" in lines
    assert "| sdedit | 21 | 1.0500 | 1.1053 | ≤ 1.05 | FAIL |" in lines  # 1.0500001 > goal
    assert "| empty | 21 | nan | nan | ≤ 1.05 | n/a |" in lines
    assert "| gff | train | 1.0300 | 1.0100 | 1.0010 | ≤ 1.03 | PASS |" in lines
    assert "| gff | sample | 0.9800 | 0.9700 | 1.0020 | ≤ 1.03 | PASS |" in lines
    assert "| edge | train | 1.0301 | 1.0200 | 1.0010 | ≤ 1.03 | FAIL |" in lines
    assert "| edge | sample | 1.2000 | 1.1000 | 1.0020 | ≤ 1.03 | FAIL |" in lines
    assert "| model | step | B = 1 | B = 4 |" in lines
    assert "| GFF | sample | 100.0 | 200.0 |" in lines
    assert "| isotropic | train | 25.0 | 50.0 |" in lines
    assert lines[-1] == "Verdicts (measured ratio ≤ goal): 3 PASS, 3 FAIL of 7."
    assert sum(line.startswith("|---") for line in lines) == 3
    assert "200 s (overhead 70 s, training 40 s, throughput 90 s)" in lines[0]


def test_plot_writes_throughput_and_both_overhead_charts(tmp_path):
    pytest.importorskip("matplotlib")
    paths = speed.plot(fake_result(), tmp_path)
    names = ["speed-throughput.png", "speed-overhead.png", "speed-training.png"]
    assert paths == [tmp_path / n for n in names]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width >= 300 and im.height >= 200, im.size
            lo, hi = im.convert("L").getextrema()
            assert hi - lo > 100, (p, lo, hi)


def test_throughput_on_a_tiny_setting():
    pytest.importorskip("diffusers")
    res = speed.throughput(
        ("fashion-edge",), (1, 2), train_models=("fashion-edge",), warmup=1, reps=2
    )
    json.dumps(res)  # JSON-safe
    assert res["batches"] == [1, 2] and res["warmup"] == 1 and res["reps"] == 2
    assert [(s["model"], s["step"]) for s in res["series"]] == [
        ("fashion-edge", "sample"),
        ("fashion-edge", "train"),
    ]
    for s in res["series"]:
        assert len(s["ms"]) == len(s["images_per_s"]) == 2
        assert all(math.isfinite(v) and v > 0 for v in s["ms"] + s["images_per_s"]), s
        for b, ms, ips in zip(res["batches"], s["ms"], s["images_per_s"], strict=True):
            assert ips == pytest.approx(1e3 * b / ms)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"models": ("nope",)}, "unknown bundled model 'nope'"),
        ({"batches": (0, 2)}, "batches"),
        ({"reps": 0}, "reps=0"),
    ],
)
def test_throughput_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        speed.throughput(**kwargs)
