"""Merging editing runs: runs of one repeat each into one run of several repeats, or runs of
different settings into one result that holds them all.

**Repeats.** A long preset (``full``: 3 repeats) can be split into runs that each fit a time
limit, e.g. three GPU commands ``--set repeats=1 --set seed=S`` with ``S`` = 0, 1000000,
2000000. Repeat ``r`` of a run draws every seed as ``preset.seed + 10**6 * r + ...``
(:func:`~._editing_methods.seed_of`), so those three runs draw exactly the numbers of one
``repeats=3`` run, and :func:`merge` gives its rows: every metric the mean over runs, ``std`` and
``repeats`` as :func:`aggregate` writes them.

**Settings.** Runs with the same seed, images and pairs that differ in how they edit (the
:data:`VARIANT` fields: steps, sampler, grid shift, map draws, NFE budgets, methods,
guidance, ...) are *combined* (:func:`combine`): the rows of all runs in one result, each
row's setting label extended by the :data:`LABELLED` settings of its run that differ between
the runs and apply to its method (``s = 0.5 · NFE 30 · dpm++2m-sde``, ``s = 0.5 · 100
steps``), with the same values under ``row["variant"]``. This is how an NFE sweep too long for
one command is split, and how a sweep is set beside the ``steps`` run it is compared with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._editing_methods import RULE_METHODS
from ._editing_metrics import aggregate

__all__ = ["LABELLED", "VARIANT", "combine", "load_results", "merge"]

#: Settings the runs must share (everything but the seed; the same machine for s/img).
SHARED = ("model", "device", "hardware", "torch", "pairs")
#: Config fields in which combined runs may differ: how they edit, not what they edit.
VARIANT = (
    "steps", "strengths", "ilvr_factors", "map_draws", "methods", "sampler", "shift", "nfe",
    "map_study", "map_reference", "examples", "diversity_inputs", "diversity_k",
    "example_strength", "example_ilvr_factor", "per_image", "guidance",
)  # fmt: skip
#: Of those, the ones that change a row's edits and so name it when they differ, with the
#: methods they apply to (``None``: every method).
LABELLED: dict[str, frozenset[str] | None] = {
    "steps": None,  # not for NFE-sweep rows, whose budget sets their steps
    "map_draws": frozenset({"NGDM", "NGDM+EF", "DiffEdit"}),
    "sampler": RULE_METHODS,
    "shift": None,
    "guidance": None,
}
#: Fields added to the preset after results were first written, with the value they had then.
DEFAULTS = {
    "sampler": "ddpm", "shift": 1.0, "nfe": [], "map_study": [], "map_reference": 20,
    "per_image": False,
}  # fmt: skip


def _config(result: dict[str, Any]) -> dict[str, Any]:
    return DEFAULTS | result["config"]


def _setting(result: dict[str, Any], ignore: tuple[str, ...] = ("seed",)) -> dict[str, Any]:
    config = {k: v for k, v in _config(result).items() if k not in ignore}
    return {"config": config, **{k: result.get(k) for k in SHARED}}


def _describe(field: str, value: Any) -> str:
    if field == "steps":
        return f"{value} steps"
    if field == "map_draws":
        return f"n {value}"
    if field == "shift":
        return f"shift {value:g}"
    if field == "guidance":
        return f"guidance {value:g}"
    return str(value)


def merge(results: list[dict[str, Any]], references: tuple[str, ...]) -> dict[str, Any]:
    """One result of ``len(results)`` repeats from runs of one repeat each, or, when the runs
    differ in their settings, :func:`combine` of them (module docs).

    ``references`` are the methods measured once (the first run's rows are kept, as
    :func:`~nidiff.bench.editing.run` measures them in its first repeat only). The merged
    result has the first run's examples and setting, ``config.repeats`` the number of runs,
    ``config.seed`` their seeds, ``seconds`` their sum and ``merged_seeds`` the seeds in order.

    Raises:
        ValueError: fewer than two runs, a run of more than one repeat, two runs with the same
            seed and settings, or runs that differ in anything but their seed and are not
            combinable (:func:`combine`).
    """
    if len(results) < 2:
        raise ValueError("merge needs at least two editing results")
    first = results[0]
    for i, r in enumerate(results):
        if r.get("config", {}).get("repeats") != 1 or "rows" not in r:
            raise ValueError(f"result {i + 1} is not an editing run of one repeat (repeats=1)")
    if any(_setting(r) != _setting(first) for r in results):
        return combine(results, references)
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


def combine(results: list[dict[str, Any]], references: tuple[str, ...]) -> dict[str, Any]:
    """One result holding the rows of runs that differ only in :data:`VARIANT` settings (module
    docs): the reference rows (``references``) of the first run, every other row of each run
    with its label extended by its run's differing :data:`LABELLED` settings, the examples and
    weighting-map studies of all runs, ``seconds`` their sum and ``runs`` each run's preset,
    config and seconds.

    Raises:
        ValueError: runs that differ in their seed, images, pairs, model or machine,
            or two runs that measure the same (pair, method, setting).
    """
    first = results[0]
    for i, r in enumerate(results):
        if _setting(r, VARIANT) != _setting(first, VARIANT):
            raise ValueError(
                f"result {i + 1} differs from result 1 in more than its seed, and not only in "
                f"how it edits ({', '.join(VARIANT)}): runs of different settings combine only "
                "with the same seed, images, pairs, model and machine"
            )
    configs = [_config(r) for r in results]
    differ = [f for f in LABELLED if len({json.dumps(c[f]) for c in configs}) > 1]
    rows: list[dict[str, Any]] = []
    owner: dict[tuple, int] = {}
    examples = {**first["examples"], "pairs": {}}
    for i, (r, c) in enumerate(zip(results, configs, strict=True)):
        suffix_of: dict[str, str] = {}
        for row in r["rows"]:
            method = row["method"]
            if method in references:
                if i == 0:
                    rows.append(row)
                continue
            variant = {
                f: c[f]
                for f in differ
                if (LABELLED[f] is None or method in LABELLED[f])
                and not (f == "steps" and "budget" in row)
                and not (f == "shift" and c[f] == 1.0)  # unshifted rows keep their names
            }
            suffix = "".join(f" · {_describe(f, v)}" for f, v in variant.items())
            suffix_of[method] = suffix
            new = {**row, "setting": row["setting"] + suffix}
            if variant:
                new |= {"variant": variant, "variant_label": suffix.removeprefix(" · ")}
            key = (new["pair"], method, new["setting"])
            if key in owner:
                raise ValueError(
                    f"results {owner[key]} and {i + 1} both measure {method} {new['setting']} "
                    f"on {new['pair']}; give each method and setting to one run"
                )
            owner[key] = i + 1
            rows.append(new)
        for label, e in r["examples"]["pairs"].items():
            mine = examples["pairs"].setdefault(label, {**e, "edits": {}})["edits"]
            for key, edit in e["edits"].items():
                mine.setdefault(key + suffix_of.get(key.split(" · ")[0], ""), edit)
    out = {
        **first,
        "preset": f"{first['preset']} (combined with {len(results) - 1} more)",
        "rows": rows,
        "examples": examples,
        "seconds": sum(r["seconds"] for r in results),
        "runs": [{"preset": r["preset"], "config": r["config"], "seconds": r["seconds"]}
                 for r in results],
    }  # fmt: skip
    studies = [row for r in results for row in r.get("map_quality", [])]
    if studies:
        out["map_quality"] = studies
    return out


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
