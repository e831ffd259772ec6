"""Merging editing runs of one repeat each into one run of several repeats.

A long preset (``full``: 3 repeats) can be split into runs that each fit a time limit, e.g. three
GPU commands ``--set repeats=1 --set seed=S`` with ``S`` = 0, 1000000, 2000000. Repeat ``r`` of a
run draws every seed as ``preset.seed + 10**6 * r + ...`` (:func:`~._editing_methods.seed_of`),
so those three runs draw exactly the numbers of one ``repeats=3`` run, and :func:`merge` gives
its rows: every metric the mean over runs, ``std`` and ``repeats`` as :func:`aggregate` writes
them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._editing_metrics import aggregate

__all__ = ["load_results", "merge"]

#: Settings the runs must share (everything but the seed; the same machine for s/img).
SHARED = ("model", "device", "hardware", "torch", "pairs")


def _setting(result: dict[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in result["config"].items() if k != "seed"}
    return {"config": config, **{k: result.get(k) for k in SHARED}}


def merge(results: list[dict[str, Any]], references: tuple[str, ...]) -> dict[str, Any]:
    """One result of ``len(results)`` repeats from runs of one repeat each (module docs).

    ``references`` are the methods measured once (the first run's rows are kept, as
    :func:`~nidiff.bench.editing.run` measures them in its first repeat only). The merged
    result has the first run's examples and setting, ``config.repeats`` the number of runs,
    ``config.seed`` their seeds, ``seconds`` their sum and ``merged_seeds`` the seeds in order.

    Raises:
        ValueError: fewer than two runs, a run of more than one repeat, two runs with the same
            seed, or runs that differ in anything but their seed.
    """
    if len(results) < 2:
        raise ValueError("merge needs at least two editing results")
    first = results[0]
    for i, r in enumerate(results):
        if r.get("config", {}).get("repeats") != 1 or "rows" not in r:
            raise ValueError(f"result {i + 1} is not an editing run of one repeat (repeats=1)")
        if _setting(r) != _setting(first):
            raise ValueError(
                f"result {i + 1} differs from result 1 in more than its seed (config, model, "
                "device, hardware, torch or pairs)"
            )
    seeds = [r["config"]["seed"] for r in results]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the runs must have different seeds, got {seeds}")
    per_run = [
        [row for row in r["rows"] if i == 0 or row["method"] not in references]
        for i, r in enumerate(results)
    ]
    return {
        **first,
        "preset": f"{first['preset']} (merged: {len(results)} seeds)",
        "config": {**first["config"], "repeats": len(results), "seed": seeds},
        "rows": aggregate(per_run),
        "seconds": sum(r["seconds"] for r in results),
        "merged_seeds": seeds,
    }


def load_results(paths: list[Path]) -> list[dict[str, Any]]:
    """The JSON results at ``paths``.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: a file that is not JSON.
    """
    out = []
    for path in paths:
        try:
            out.append(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a JSON result: {err}") from err
    return out
