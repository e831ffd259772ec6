"""The editing benchmark's markdown report (:func:`markdown`): one table per pair and the pooled
one, then the few-step goal table and the weighting-map study, from a result of
:func:`nidiff.bench.editing.run` (or of a merge, :mod:`._editing_merge`)."""

from __future__ import annotations

from typing import Any

from ._editing_compare import TOLERANCE, goal_rows
from ._editing_map import KEYS as MAP_KEYS
from ._editing_methods import METHODS

__all__ = ["COLUMNS", "REFERENCES", "markdown"]

#: The rows every table starts with: the unedited sources and the target class's own images.
REFERENCES = ("source", "target (train)")

COLUMNS = (
    ("fid", "FID", "{:.1f}"),
    ("kid", "KID", "{:.3f}"),
    ("accuracy", "target acc", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
    ("psnr", "PSNR", "{:.1f}"),
    ("bg_psnr", "bg PSNR", "{:.1f}"),
    ("bg_ssim", "bg SSIM", "{:.3f}"),
    ("diversity", "diversity", "{:.4f}"),
    ("seconds_per_image", "s/img", "{:.3f}"),
    ("nfe_per_image", "NFE/img", "{:.0f}"),
)


def _cell(row: dict, key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None:
        return "–"
    std = row.get("std", {}).get(key)
    return fmt.format(v) + ("" if std is None else " ± " + fmt.format(std))


def _order(row: dict) -> tuple:
    m = row["method"]
    rank = REFERENCES.index(m) if m in REFERENCES else len(REFERENCES) + METHODS.index(m)
    variant = row.get("variant_label", "")  # combined runs (_editing_merge): their settings
    return rank, variant, row.get("budget", 0), row["param"] if row["param"] is not None else 0.0


def _goal_markdown(goal: list[dict]) -> list[str]:
    """The few-step curves against each method's ``steps``-grid curve at matched accuracy."""
    tol = TOLERANCE
    lines = [
        "",
        "**Few evaluations vs the steps grid at matched target accuracy** (pooled; at each "
        "reference point, few-step − reference with the few-step curve interpolated linearly "
        f"in accuracy along its strength sweep; within: every ΔSSIM ≥ −{tol['ssim']:g} and "
        f"Δbg PSNR ≥ −{tol['bg_psnr']:g} dB; uncovered: reference accuracies outside the "
        "few-step sweep; with per-image values, [brackets]: the bootstrap interval of each "
        "difference and *met in*: the share of redraws of the images meeting the goal)",
        "",
        "| method | NFE ≤ | variant | NFE/img | reference | worst ΔSSIM | worst Δbg PSNR "
        "| within | met in | at accuracy: ΔSSIM / Δbg PSNR |",
        "|---|---:|---|---:|---|---:|---:|---|---:|---|",
    ]
    for g in goal:
        w, pts, boot = g["worst"], g["points"], g.get("interval")
        cells = [
            "–" if w[k] is None else f"{w[k]:+.3f}" if k == "ssim" else f"{w[k]:+.2f}"
            for k in ("ssim", "bg_psnr")
        ]
        met = {None: "not all covered", True: "yes", False: "no"}[g["met"]]
        spans = {b["param"]: b for b in boot["points"]} if boot else {}
        at = [f"{q['accuracy']:.2f}: {q['d_ssim']:+.3f} / {q['d_bg_psnr']:+.2f}"
              + _span(spans.get(q["param"])) for q in pts]  # fmt: skip
        at = "; ".join(at + [f"{a:.2f}: uncovered" for a in g["uncovered"]])
        share = f"{boot['met']:.0%}" if boot else "–"
        lines.append(
            f"| {g['method']} | {g['budget']} | {g['variant'] or '–'} | {g['nfe']:.0f} | "
            f"{g['reference'] or 'steps grid'} | {cells[0]} | {cells[1]} | {met} | {share} | "
            f"{at or '–'} |"
        )
    return lines


def _span(b: dict | None) -> str:
    """`` [lo, hi] / [lo, hi]``: a point's bootstrap intervals of ΔSSIM and Δbg PSNR."""
    if b is None or b["d_ssim"] is None:
        return ""
    s, p = b["d_ssim"], b["d_bg_psnr"]
    return f" [{s[0]:+.3f}, {s[1]:+.3f} / {p[0]:+.2f}, {p[1]:+.2f}]"


def _map_markdown(rows: list[dict]) -> list[str]:
    """The weighting-map study's pooled table (per-pair rows are in the JSON)."""
    ref = rows[0]["reference"]
    lines = [
        "",
        f"**Weighting map with fewer draws** (pooled; vs a {ref}-draw map; the n = {ref} row is "
        "a second, independent map of as many draws: the noise floor)",
        "",
        "| draws n | map NFE/img | " + " | ".join(h for _, h, _ in MAP_KEYS) + " |",
        "|---:|---:|" + "---:|" * len(MAP_KEYS),
    ]
    for r in sorted((r for r in rows if r["pair"] == "pooled"), key=lambda r: r["n"]):
        cells = " | ".join(f.format(r[k]) for k, _, f in MAP_KEYS)
        lines.append(f"| {r['n']} | {r['nfe']:.0f} | {cells} |")
    return lines


def _variant(c: dict) -> str:
    """The non-default solver, shift and NFE sweep of a config, for the header."""
    parts = []
    if c.get("sampler", "ddpm") != "ddpm":
        parts.append(f"sampler {c['sampler']}")
    if c.get("shift", 1.0) != 1.0:
        parts.append(f"grid shift {c['shift']:g}")
    if c.get("nfe"):
        parts.append(f"NFE sweep {'/'.join(map(str, c['nfe']))} (replaces the steps grid)")
    return "".join(f", {x}" for x in parts)


def markdown(result: dict[str, Any]) -> str:
    """One table per pair, then the pooled table (columns: method, setting and :data:`COLUMNS`)."""
    c = result["config"]
    lines = [
        f"Editing, {result['preset']} preset: {c['images']} Fashion-MNIST test images per pair, "
        f"bundled {result['model']}, {c['steps']} linspace steps, target guidance "
        f"{c['guidance']:g}, {c['repeats']} repeat(s){_variant(c)}; {result['hardware']}, "
        f"{result['threads']} thread(s), {result['seconds']:.0f} s.",
        "",
        "FID/KID: vs the target class's test images in bundled-classifier features (not "
        "Inception; FID is biased at small n — compare with the `target (train)` row and trust "
        f"KID). Diversity: K = {c['diversity_k']} edits of {c['diversity_inputs']} inputs. "
        "bg: outside the pair's edit region. NFE/img: a guided step counts 2.",
    ]
    labels = [q["label"] for q in result["pairs"]] + ["pooled"]
    head = "| method | setting | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    rule = "|---|---|" + "---:|" * len(COLUMNS)
    for label in labels:
        rows = sorted((r for r in result["rows"] if r["pair"] == label), key=_order)
        lines += [
            "",
            f"**{label}**" + (" (all pairs)" if label == "pooled" else ""),
            "",
            head,
            rule,
        ]
        for r in rows:
            cells = " | ".join(_cell(r, k, f) for k, _, f in COLUMNS)
            lines.append(f"| {r['method']} | {r['setting']} | {cells} |")
    goal = goal_rows(result)
    if goal:
        lines += _goal_markdown(goal)
    if result.get("map_quality"):
        lines += _map_markdown(result["map_quality"])
    lines += [
        "",
        f"Classifier accuracy on the target classes' test images: "
        f"{result['classifier_accuracy']:.3f}",
    ]
    return "\n".join(lines)
