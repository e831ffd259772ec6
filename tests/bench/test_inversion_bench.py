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
