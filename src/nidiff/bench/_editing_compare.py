r"""Two fidelity–editability curves at matched target accuracy (the few-step goal's test).

A method's *curve* is its strength sweep: points (target accuracy, SSIM, background PSNR) in
sweep order. A candidate curve is read at the target accuracy of every *reference* point, by
linear interpolation in accuracy between its consecutive sweep points (the first segment that
spans that accuracy, in sweep order), and the differences candidate − reference are reported.
The reference points are measured, the candidate interpolated: the chord of a curve that bends
down (fidelity falling ever faster as accuracy nears 1) lies below it, so a sparse candidate
sweep is judged pessimistically; sweep the candidate densely. A reference point outside the
candidate's accuracy range is *uncovered* (listed, not compared). A candidate *meets* a
tolerance (SSIM ``0.02``, background PSNR ``1 dB``) when every reference point is covered and no
difference is below minus it (``met`` True); it fails when some covered difference is (False);
otherwise nothing can be said (``None``: points uncovered).

In a result that holds both NFE-sweep rows (``budget``) and ``steps``-grid rows of a method
(combined runs, :mod:`nidiff.bench._editing_merge`), :func:`goal_rows` compares every sweep
curve with at most ``max_budget`` evaluations against the method's ``steps`` curve.

**How sure.** Where the curve is steep — fidelity falling fast while accuracy saturates near 1 —
a small error in a point's accuracy moves the interpolated fidelity a lot, so the seed and image
noise of the points matters as much as the methods. When every row carries its per-image values
(``row["per_image"]``: ``accuracy`` 0/1, ``ssim``, ``bg_psnr`` in one image order shared by all
rows; ``--set per_image=true``), :func:`bootstrap` redraws the images with replacement — the
same draw for every point of both curves, since they edit the same sources — and repeats the
comparison: a percentile interval for each difference and the fraction of draws in which the
goal is met.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise
from typing import Any

import torch

__all__ = ["TOLERANCE", "bootstrap", "compare", "goal_rows", "interpolate"]

#: The goal's tolerances: SSIM to the source and background PSNR (dB).
TOLERANCE = {"ssim": 0.02, "bg_psnr": 1.0}


def interpolate(curve: list[tuple[float, float]], a: float) -> float | None:
    """The value of ``curve`` (``(accuracy, value)`` points in sweep order) at accuracy ``a``:
    linear on the first segment whose accuracies span ``a`` (a point itself if it is one);
    ``None`` outside every segment."""
    for (a0, v0), (a1, v1) in pairwise(curve):
        lo, hi = min(a0, a1), max(a0, a1)
        if lo <= a <= hi:
            return v0 if a1 == a0 else v0 + (v1 - v0) * (a - a0) / (a1 - a0)
    if len(curve) == 1 and curve[0][0] == a:
        return curve[0][1]
    return None


def _curve(rows: list[dict], key: str) -> list[tuple[float, float]]:
    pts = sorted(rows, key=lambda r: r["param"])
    return [(r["accuracy"], r[key]) for r in pts if None not in (r["accuracy"], r[key])]


def compare(
    reference: list[dict], candidate: list[dict], tolerance: dict[str, float] = TOLERANCE
) -> dict[str, Any]:
    """Compare a candidate sweep with a reference sweep (rows with ``param``, ``accuracy`` and
    the ``tolerance`` keys) at the reference's accuracies (module docs).

    Returns:
        ``{"points": [{"param", "accuracy", "<key>_ref", "<key>", "d_<key>"}, ...], "uncovered":
        [accuracy, ...], "worst": {key: min difference or None}, "met": bool or None}``.
    """
    keys = list(tolerance)
    cand = {k: _curve(candidate, k) for k in keys}
    points, uncovered = [], []
    for r in sorted(reference, key=lambda r: r["param"]):
        a = r["accuracy"]
        if a is None or any(r[k] is None for k in keys):
            continue
        got = {k: interpolate(cand[k], a) for k in keys}
        if any(v is None for v in got.values()):
            uncovered.append(a)
            continue
        p: dict[str, float] = {"param": r["param"], "accuracy": a}
        for k in keys:
            p |= {f"{k}_ref": r[k], k: got[k], f"d_{k}": got[k] - r[k]}
        points.append(p)
    worst = {k: min((p[f"d_{k}"] for p in points), default=None) for k in keys}
    within = bool(points) and all(worst[k] >= -tolerance[k] for k in keys)
    met = False if points and not within else None if uncovered or not points else True
    return {"points": points, "uncovered": uncovered, "worst": worst, "met": met}


def bootstrap(
    reference: list[dict],
    candidate: list[dict],
    *,
    draws: int = 1000,
    level: float = 0.9,
    seed: int = 0,
    tolerance: dict[str, float] = TOLERANCE,
) -> dict[str, Any] | None:
    """:func:`compare` repeated on ``draws`` paired redraws of the images (module docs).

    Returns ``None`` unless every row has ``per_image`` values of one common length; else
    ``{"level", "draws", "points": [{"param", "accuracy", "covered", "d_<key>": [lo, hi]}, ...],
    "met": fraction of draws in which every reference point is covered and within the
    tolerance}``, one entry per reference point (``param`` and ``accuracy`` as measured;
    ``covered`` the fraction of draws in which the redrawn candidate spans the redrawn reference
    accuracy; intervals over those draws).
    """
    rows = reference + candidate
    keys = ["accuracy", *tolerance]
    if not rows or any("per_image" not in r for r in rows):
        return None
    if len({len(r["per_image"][k]) for r in rows for k in keys}) != 1:
        return None  # not one image order shared by every row
    values = torch.tensor([[r["per_image"][k] for k in keys] for r in rows], dtype=torch.float64)
    n = values.shape[-1]  # (rows, keys, images)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(n, (draws, n), generator=gen)
    means = values[:, :, idx].mean(-1).tolist()  # [row][key][draw]
    refs = sorted(range(len(reference)), key=lambda i: rows[i]["param"])  # sweep order
    cands = sorted(range(len(reference), len(rows)), key=lambda i: rows[i]["param"])
    diffs: dict[int, dict[str, list[float]]] = {i: {k: [] for k in tolerance} for i in refs}
    met = 0
    for d in range(draws):
        curves = {k: [(means[j][0][d], means[j][c][d]) for j in cands]
                  for c, k in enumerate(keys) if c}  # fmt: skip
        within = True
        for i in refs:  # compare()'s reading of each reference point, on the redrawn means
            for c, (k, t) in enumerate(tolerance.items(), 1):
                v = interpolate(curves[k], means[i][0][d])
                if v is None:  # uncovered in this draw: no difference, not met
                    within = False
                    break
                diffs[i][k].append(v - means[i][c][d])
                within = within and diffs[i][k][-1] >= -t
        met += within
    lo, hi = (1 - level) / 2, (1 + level) / 2
    points = []
    for i in refs:
        entry: dict[str, Any] = {k: reference[i][k] for k in ("param", "accuracy")}
        entry["covered"] = len(diffs[i][keys[1]]) / draws
        for k in tolerance:
            v = torch.tensor(diffs[i][k], dtype=torch.float64)
            entry[f"d_{k}"] = [float(v.quantile(lo)), float(v.quantile(hi))] if len(v) else None
        points.append(entry)
    return {"level": level, "draws": draws, "points": points, "met": met / draws}


def _by_budget(item: tuple) -> tuple:
    (_, budget, variant), _ = item
    return budget or 0, variant


def goal_rows(
    result: dict[str, Any],
    methods: tuple[str, ...] = ("EF", "NGDM", "NGDM+EF"),
    max_budget: int = 30,
    pair: str = "pooled",
) -> list[dict[str, Any]]:
    """For each of ``methods`` and each of its sweep curves (budget, variant) with budget
    ``<= max_budget``: the :func:`compare` of it against the method's ``steps``-grid curve in
    ``result`` (rows without a budget; the first such variant), on ``pair``. Each entry:
    ``method``, ``budget``, ``variant``, ``nfe`` (the largest counted NFE per image of the
    curve), ``reference`` (the reference's variant label), the comparison and ``interval``
    (its :func:`bootstrap`, ``None`` without per-image values)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in result["rows"]:
        if r["pair"] == pair and r["method"] in methods:
            groups[(r["method"], r.get("budget"), r.get("variant_label", ""))].append(r)
    out = []
    for method in methods:
        refs = [(v, rows) for (m, b, v), rows in groups.items() if m == method and b is None]
        if not refs:
            continue
        ref_label, ref_rows = refs[0]
        for (m, budget, variant), rows in sorted(groups.items(), key=_by_budget):
            if m != method or budget is None or budget > max_budget:
                continue
            nfe = max(r["nfe_per_image"] for r in rows)
            out.append({"method": method, "budget": budget, "variant": variant, "nfe": nfe,
                        "reference": ref_label, **compare(ref_rows, rows),
                        "interval": bootstrap(ref_rows, rows)})  # fmt: skip
    return out
