"""The inversion benchmark's noise-map statistics (EF Fig. 5 set-up) at a small size, and its
tables; the full benchmark (the bundled Fashion model) is not run here."""

from __future__ import annotations

import json

import pytest

from nidiff.bench.inversion import markdown, noise_statistics, statistics_table
from nidiff.cli.bench import BENCHMARKS


@pytest.fixture(scope="module")
def stats():
    return noise_statistics(batch=200, steps=40, seed=0)


def test_ef_maps_are_obtuse_and_native_maps_are_not(stats):
    ef, native = stats["methods"]["edit-friendly"], stats["methods"]["native"]
    # 200 × 39 angles: standard error ≈ 52° / √7800 ≈ 0.6°
    assert ef["mean_angle"] > 90 + 10 * ef["angle_se"], ef
    assert abs(native["mean_angle"] - 90) < 4 * native["angle_se"], native
    assert ef["variance"] > 2 and min(ef["variance_per_step"]) > 1.5, ef
    assert abs(native["variance"] - 1) < 0.05, native
    assert len(ef["variance_per_step"]) == len(stats["times"]) == 39
    assert len(ef["angle_per_step"]) == 38


def test_tables_render(stats):
    table = statistics_table(stats)
    for name in ("edit-friendly", "cycle", "native"):
        assert f"| {name} |" in table
    fake = {
        "preset": "custom",
        "hardware": "CPU",
        "threads": 1,
        "seconds": {"total": 1.0},
        "statistics": stats,
        "steps": 3,
        "images": ["a.png"],
        "reconstruction": {"edit-friendly": {"mean": 1e-7, "max": 2e-7, "per_image": [1e-7]}},
        "shift": {"1": {"mse_ef": 0.01, "mse_native": 0.1, "ratio": 0.1}},
    }
    json.dumps(fake)  # the result is JSON-safe
    text = markdown(fake)
    assert table in text
    assert "| 1 | 0.0100 | 0.1000 | 0.100 |" in text


def test_registered_in_cli():
    spec = BENCHMARKS["inversion"]
    assert spec.module == "nidiff.bench.inversion" and spec.table == "markdown"


def _fake(stats) -> dict:
    return {
        "preset": "custom",
        "device": "cpu",
        "hardware": "CPU",
        "torch": "x",
        "threads": 1,
        "seconds": {"statistics": 0.5, "fashion": 0.5, "total": 1.0},
        "statistics": stats,
        "steps": 3,
        "images": ["a.png", "b.png"],
        "reconstruction": {
            "edit-friendly": {"mean": 1e-7, "max": 2e-7, "per_image": [1e-7, 2e-7]},
            "edit-friendly, zero_last": {"mean": 1e-2, "max": 3e-2, "per_image": [1e-2, 3e-2]},
            "cycle": {"mean": 1e-6, "max": 2e-6, "per_image": [1e-6, 2e-6]},
        },
        "shift": {
            "1": {"mse_ef": 0.01, "mse_native": 0.1, "ratio": 0.1},
            "4": {"mse_ef": 0.05, "mse_native": 0.2, "ratio": 0.25},
        },
    }


def _check_png(path):
    """A readable PNG of at least 300 × 200 pixels that is not one flat colour."""
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 300 and im.height >= 200, (im.format, im.size)
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 100, (lo, hi)


def test_plot_writes_the_four_panel_figure(stats, tmp_path):
    pytest.importorskip("matplotlib")
    from nidiff.bench.inversion import plot

    paths = plot(_fake(stats), tmp_path)
    assert paths == [tmp_path / "inversion.png"]
    _check_png(paths[0])
    assert [p.name for p in tmp_path.iterdir()] == ["inversion.png"]


def test_cli_out_writes_json_table_and_plot(stats, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from cli_calls import run

    from nidiff.bench import inversion

    def invoke(*args):
        return run("bench", "inversion", *args)

    fake = json.loads(json.dumps(_fake(stats)))
    monkeypatch.setattr(inversion, "run", lambda quick, device: fake)
    out = tmp_path / "out"
    res = invoke("--quick", "--device", "cpu", "--out", out)
    assert res.exit_code == 0, (res.output, res.exception)
    assert sorted(p.name for p in out.iterdir()) == [
        "inversion.json",
        "inversion.md",
        "inversion.png",
    ]
    assert json.loads((out / "inversion.json").read_text()) == fake
    assert (out / "inversion.md").read_text() == markdown(fake) + "\n"
    _check_png(out / "inversion.png")
    res = invoke("--out", out)
    assert res.exit_code == 2 and "--overwrite" in res.stderr, res.output
    assert invoke("--out", out, "--overwrite").exit_code == 0

    def bad_device(quick, device):
        raise ValueError("bad device")

    monkeypatch.setattr(inversion, "run", bad_device)
    res = invoke("--out", tmp_path / "none")
    assert res.exit_code == 2 and "bad device" in res.stderr, res.output
    assert not (tmp_path / "none").exists()
