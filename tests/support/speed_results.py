"""A fake ``nidiff bench speed`` result (its first three parts), for the report's tests."""

from __future__ import annotations

import math


def fake_result() -> dict:
    def row(method: str, overhead: float) -> dict:
        return {
            "method": method, "nfe": 21, "reported_nfe": 21, "batches": {"1": 21},
            "wall_s": 2.0 * overhead, "network_s": 2.0, "isolated_network_s": 1.9,
            "overhead": overhead, "overhead_vs_isolated": 2.0 * overhead / 1.9,
        }  # fmt: skip

    overhead = {
        "rows": [row("ngdm", 1.05), row("sdedit", 1.0500001), row("empty", math.nan)],
        "call_time": {"1": 0.05},
        "paper_nfe": [],
        "config": {"device": "cpu", "threads": 1, "model": "fashion-isotropic", "steps": 20,
                   "batch": 1, "guidance": 3.0, "skip": 7, "reps": 5},
        "goal": 1.05,
    }  # fmt: skip
    training = {
        "preset": "quick", "hardware": "CPU (test)", "batch": 8, "size": 28, "rounds": 9,
        "ratio": {"gff": {"train": 1.03, "sample": 0.98}, "edge": {"train": 1.0301,
                                                                  "sample": 1.2}},
        "ratio_of_minima": {"gff": {"train": 1.01, "sample": 0.97}, "edge": {"train": 1.02,
                                                                            "sample": 1.1}},
        "ratio_from_parts": {k: {"train": 1.001, "sample": 1.002} for k in ("gff", "edge")},
        "goal": 1.03,
    }  # fmt: skip
    throughput = {
        "batches": [1, 4],
        "warmup": 1,
        "reps": 5,
        "series": [
            {"model": "fashion-gff", "step": "sample", "ms": [10.0, 20.0],
             "images_per_s": [100.0, 200.0]},
            {"model": "fashion-isotropic", "step": "train", "ms": [40.0, 80.0],
             "images_per_s": [25.0, 50.0]},
        ],
    }  # fmt: skip
    return {
        "preset": "quick", "device": "cpu", "hardware": "CPU (test)", "torch": "2.x",
        "threads": 1, "overhead": overhead, "training": training, "throughput": throughput,
        "seconds": {"overhead": 70.0, "training": 40.0, "throughput": 90.0, "total": 200.0},
    }  # fmt: skip
