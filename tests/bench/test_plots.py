"""The plots of the training and overhead benchmarks, ``--out`` through ``nidiff bench`` (with a
fake ``run``: a real one takes minutes) and :func:`nidiff.bench._report.write_outputs`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("matplotlib")

from cli_calls import run

from nidiff.bench import overhead, training
from nidiff.bench._report import write_outputs


def fake_training() -> dict:
    kinds = ("isotropic", "gff", "edge")
    ms = {f"{w}/{k}": 10.0 for w in ("train", "sample") for k in kinds}
    ms |= {"network/forward": 5.0, "network/forward+backward": 9.0, "noise/gff colour": 0.1}
    ms |= {f"transition/{k}": 0.2 for k in kinds}
    ratio = {"gff": {"train": 1.01, "sample": 1.02}, "edge": {"train": 1.04, "sample": 0.99}}
    return {
        "preset": "quick", "device": "cpu", "hardware": "CPU (test)", "torch": "x", "threads": 1,
        "batch": 8, "size": 28, "rounds": 9, "ms": ms, "ratio": ratio,
        "ratio_of_minima": {"gff": {"train": 1.0, "sample": 1.01}, "edge": {"train": 1.02,
                                                                           "sample": 0.98}},
        "ratio_from_parts": {k: {"train": 1.001, "sample": 1.002} for k in ("gff", "edge")},
        "goal": 1.03, "meets_goal": {"gff": True, "edge": False},
    }  # fmt: skip


def fake_overhead() -> dict:
    def row(method: str, nfe: int, wall: float, net: float) -> dict:
        return {
            "method": method, "nfe": nfe, "reported_nfe": nfe, "batches": {"1": nfe},
            "wall_s": wall, "network_s": net, "isolated_network_s": net * 0.9,
            "overhead": wall / net, "overhead_vs_isolated": wall / (net * 0.9),
        }  # fmt: skip

    return {
        "rows": [row("weighting map", 1, 1.0, 0.98), row("ngdm", 20, 2.3, 2.0)],
        "call_time": {"1": 0.05},
        "paper_nfe": [{"method": "EF invert", "nfe": 100, "notes": ""}],
        "config": {"device": "cpu", "threads": 1, "model": "fashion-isotropic", "steps": 20,
                   "batch": 1, "guidance": 3.0, "skip": 7, "reps": 5},
        "goal": 1.05,
    }  # fmt: skip


def check_png(path: Path) -> None:
    """A readable PNG of at least 300 × 200 pixels that is not one flat colour."""
    assert path.is_file() and path.suffix == ".png", path
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 300 and im.height >= 200, (im.format, im.size)
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 100, (lo, hi)  # axes, text and bars on white


@pytest.mark.parametrize(
    ("module", "fake", "png"),
    [(training, fake_training, "training.png"), (overhead, fake_overhead, "overhead.png")],
)
def test_plot_writes_a_png(tmp_path, module, fake, png):
    paths = module.plot(fake(), tmp_path)
    assert paths == [tmp_path / png]
    check_png(paths[0])
    assert module.plot(fake(), tmp_path, name="other") == [tmp_path / "other.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([png, "other.png"])


def cli_run(*args: str | Path):
    return run("bench", *args)


@pytest.mark.parametrize(
    ("name", "module", "fake"),
    [("training", training, fake_training), ("overhead", overhead, fake_overhead)],
)
def test_cli_out_writes_json_table_and_plot(tmp_path, monkeypatch, name, module, fake):
    monkeypatch.setattr(module, "run", lambda quick, device: fake())
    out = tmp_path / "out"
    res = cli_run(name, "--quick", "--device", "cpu", "--out", out)
    assert res.exit_code == 0, (res.output, res.exception)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{name}.json", f"{name}.md", f"{name}.png"]
    )
    assert json.loads((out / f"{name}.json").read_text()) == fake()
    table = (out / f"{name}.md").read_text()
    assert table.rstrip("\n") in res.output and table.count("\n| ") >= 3
    check_png(out / f"{name}.png")

    again = cli_run(name, "--out", out)
    assert again.exit_code == 2 and "--overwrite" in again.stderr, again.output
    res = cli_run(name, "--out", out, "--overwrite")
    assert res.exit_code == 0, (res.output, res.exception)


@pytest.mark.parametrize("name", ["training", "overhead"])
def test_cli_out_writes_nothing_when_run_or_plot_fails(tmp_path, monkeypatch, name):
    module = {"training": training, "overhead": overhead}[name]

    def failing_run(quick, device):
        raise ValueError("no such thing")

    monkeypatch.setattr(module, "run", failing_run)
    res = cli_run(name, "--out", tmp_path / "a")
    assert res.exit_code == 2 and "no such thing" in res.stderr, res.output
    assert not (tmp_path / "a").exists()

    def broken_plot(result, directory):
        (directory / "half.png").write_bytes(b"")
        raise RuntimeError("plot failed")

    monkeypatch.setattr(module, "run", lambda quick, device: {"x": 1})
    monkeypatch.setattr(module, "plot", broken_plot)
    monkeypatch.setattr(module, {"training": "markdown", "overhead": "format_tables"}[name], str)
    res = cli_run(name, "--out", tmp_path / "b")
    assert res.exit_code == 1 and isinstance(res.exception, RuntimeError), res.output
    assert not (tmp_path / "b").exists()
    (tmp_path / "c").mkdir()
    assert cli_run(name, "--out", tmp_path / "c").exit_code == 1
    assert list((tmp_path / "c").iterdir()) == []


def test_write_outputs_without_overwrite_refuses_an_existing_plot(tmp_path):
    def one_plot(result, directory):
        (directory / "p.png").write_bytes(b"png")
        return [directory / "p.png"]

    (tmp_path / "p.png").write_bytes(b"old")
    with pytest.raises(FileExistsError, match=r"p\.png exists"):
        write_outputs("x", {"a": 1}, "table", tmp_path, one_plot, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]
    assert (tmp_path / "p.png").read_bytes() == b"old"
    paths = write_outputs("x", {"a": 1}, "table", tmp_path, one_plot)
    assert paths == [tmp_path / n for n in ("x.json", "x.md", "p.png")]
    assert (tmp_path / "p.png").read_bytes() == b"png"
    assert (tmp_path / "x.md").read_text() == "table\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png", "x.json", "x.md"]
