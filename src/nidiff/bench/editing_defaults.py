r"""The defaults of ``nidiff edit`` on pixel models, chosen from editing-benchmark results.

    python -m nidiff.bench.editing_defaults RESULT.json [RESULT.json ...]

**Rule** (issue 19, "edits a user would call good"), per method, on the ``pooled`` rows of
``nidiff bench editing`` runs (each run one target guidance :math:`w`, its ``config.guidance``):

1. the candidates are the rows at the lowest guidance at which some point of the method's
   sweep reaches target accuracy :math:`\ge` :data:`MIN_ACCURACY` (0.9);
2. of those points, the most faithful one: the highest SSIM to the source, ties broken by the
   background PSNR (:func:`fidelity`);
3. where no point at any guidance reaches 0.9, the most accurate point (ties: the lower
   guidance, then the more faithful).

A row becomes :class:`~nidiff.methods.EditOptions` defaults through the registry
(:func:`defaults_of`): the benchmark's strength :math:`s` (start at the first grid time
:math:`\le s\,t_{max}`) is ``strength`` for the methods that take it and ``skip_frac`` =
:math:`1 - s` for the inverting ones (their ``skip``); ILVR's factor :math:`N` is
``factor_frac`` = :math:`N` / image side; ``guidance`` only where it is not
:class:`~nidiff.methods.EditOptions`' own. The result has the form of
:data:`nidiff.methods.PIXEL_DEFAULTS` (a test checks that the registry equals the choice on
the committed results, ``docs/results/editing-defaults-cpu-*.json``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nidiff.methods import METHODS, EditOptions

from ._editing_methods import BENCH_METHODS

__all__ = ["MIN_ACCURACY", "choose", "choose_all", "defaults_of", "fidelity", "main", "rows_of"]

#: The target accuracy a default must reach (the bundled classifier's verdict).
MIN_ACCURACY = 0.9
#: Benchmark label → registry name (``SDEdit`` → ``sdedit``, ...).
NAME_OF = {METHODS[name].label: name for name in BENCH_METHODS}


def fidelity(row: dict[str, Any]) -> tuple[float, float]:
    """The order of faithfulness: ``(SSIM, bg PSNR)``, compared lexicographically."""
    return row["ssim"], row["bg_psnr"]


def rows_of(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pooled method rows of benchmark ``results``, each with its run's ``guidance`` and
    the image ``side`` (references such as ``source`` are left out)."""
    out = []
    for res in results:
        w, side = float(res["config"]["guidance"]), int(res["examples"]["size"][-1])
        out += [r | {"guidance": w, "side": side} for r in res["rows"]
                if r["pair"] == "pooled" and r["method"] in NAME_OF]  # fmt: skip
    return out


def choose(rows: Sequence[dict[str, Any]], min_accuracy: float = MIN_ACCURACY) -> dict[str, Any]:
    """The chosen row of one method's ``rows`` (those of :func:`rows_of`) by the module's rule.

    Raises:
        ValueError: ``rows`` is empty.
    """
    if not rows:
        raise ValueError("no rows to choose from")
    passing = [r for r in rows if r["accuracy"] >= min_accuracy]
    if passing:
        w = min(r["guidance"] for r in passing)
        return max((r for r in passing if r["guidance"] == w), key=fidelity)
    return max(rows, key=lambda r: (r["accuracy"], -r["guidance"], *fidelity(r)))


def defaults_of(row: dict[str, Any]) -> dict[str, Any]:
    """A chosen row as the registry's defaults of its method (module docs)."""
    name = NAME_OF[row["method"]]
    info = METHODS[name]
    if "factor" in info.options:
        out: dict[str, Any] = {"factor_frac": row["param"] / row["side"]}
    elif info.skips:
        out = {"skip_frac": round(1 - row["param"], 6)}
    else:
        out = {"strength": row["param"]}
    if row["guidance"] != EditOptions.guidance:
        out["guidance"] = row["guidance"]
    return out


def choose_all(
    results: Iterable[dict[str, Any]], min_accuracy: float = MIN_ACCURACY
) -> dict[str, dict[str, Any]]:
    """``{method: chosen row}`` for every method in ``results``, in the benchmark's order."""
    rows = rows_of(results)
    by_name = {n: [r for r in rows if NAME_OF[r["method"]] == n] for n in BENCH_METHODS}
    return {n: choose(rs, min_accuracy) for n, rs in by_name.items() if rs}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path, help="nidiff bench editing --json files")
    ap.add_argument("--min-accuracy", type=float, default=MIN_ACCURACY)
    a = ap.parse_args(argv)
    chosen = choose_all([json.loads(p.read_text()) for p in a.results], a.min_accuracy)
    print("| method | setting | guidance | target acc | SSIM | bg PSNR | n | defaults |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in chosen.values():
        print(f"| {r['method']} | {r['setting']} | {r['guidance']:g} | {r['accuracy']:.3f} | "
              f"{r['ssim']:.3f} | {r['bg_psnr']:.1f} | {r['n']} | {defaults_of(r)} |")  # fmt: skip
    print({name: defaults_of(r) for name, r in chosen.items()})


if __name__ == "__main__":
    main()
