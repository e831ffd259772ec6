"""Figures of ``nidiff bench editing``: the fidelity-vs-editability trade-off and example edits.

* ``editing-tradeoff.png``: one column per pair (and the pooled pairs), x = target accuracy;
  top row y = SSIM to the source, bottom row y = background PSNR. One line per method through
  its sweep (in sweep order); the ``source`` row (no edit) is a black star in the SSIM row.
* ``editing-examples.png``: per pair, the first sources and one edit per method at the example
  setting (strength nearest 0.5; ILVR's middle factor), decoded from the result's uint8 hex
  strings (with an NFE sweep: one per method and budget).
* ``editing-nfe.png`` (results with NFE-sweep rows): NFE as the third dimension, one column per
  budget, the pooled pairs, the same two rows; one line per method (and run variant) through
  its strength sweep at that budget. The ``steps``-grid rows of a combined result (e.g. the
  100-step reference) are drawn dashed and grey-edged in every panel, for comparison.

The trade-off figure draws the ``steps``-grid rows only (a sweep-only result leaves it with the
source star).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ._editing_methods import METHODS
from ._report import pyplot, save_figure

__all__ = ["plot"]

Y_AXES = (("ssim", "SSIM to source"), ("bg_psnr", "background PSNR (dB)"))


def _decode(hexes: list[str], size: list[int]) -> list[torch.Tensor]:
    return [torch.tensor(list(bytes.fromhex(h)), dtype=torch.uint8).reshape(size) for h in hexes]


def _tradeoff(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    labels = [q["label"] for q in result["pairs"]] + ["pooled"]
    fig, axes = plt.subplots(
        len(Y_AXES), len(labels), figsize=(3.6 * len(labels), 3.2 * len(Y_AXES)), squeeze=False
    )
    colors = plt.get_cmap("tab10")
    for col, label in enumerate(labels):
        rows = [r for r in result["rows"] if r["pair"] == label and "budget" not in r]
        for ax, (key, name) in zip(axes[:, col], Y_AXES, strict=True):
            for m, method, variant, mine in _lines(rows):
                pts = [(r["accuracy"], r[key]) for r in mine if r[key] is not None]
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    name = method if not variant else f"{method} ({variant})"
                    ax.plot(xs, ys, "o-", color=colors(m), label=name, ms=4)
            src = [r for r in rows if r["method"] == "source"] if key == "ssim" else []
            for r in src:  # (its background PSNR is the 100 dB cap: not drawn)
                ax.plot([r["accuracy"]], [r[key]], "k*", ms=9, label="source (no edit)")
            ax.set_xlabel("target accuracy")
            ax.set_ylabel(name)
            ax.set_xlim(-0.05, 1.05)
            ax.grid(alpha=0.3)
        axes[0, col].set_title(label)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save_figure(fig, path)


def _lines(rows: list[dict]) -> list[tuple[int, str, str, list[dict]]]:
    """``(method index, method, variant label, rows by strength)`` per line of a panel, in
    method order (combined runs: one line per variant)."""
    out = []
    for m, method in enumerate(METHODS):
        variants = dict.fromkeys(r.get("variant_label", "") for r in rows if r["method"] == method)
        for v in variants:
            mine = [r for r in rows if r["method"] == method and r.get("variant_label", "") == v]
            out.append((m, method, v, sorted(mine, key=lambda r: r["param"])))
    return out


def _nfe_panels(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    pooled = [r for r in result["rows"] if r["pair"] == "pooled"]
    budgets = sorted({r["budget"] for r in pooled if "budget" in r})
    steps_rows = [r for r in pooled if "budget" not in r and r["method"] in METHODS]
    fig, axes = plt.subplots(
        len(Y_AXES), len(budgets), figsize=(3.6 * len(budgets), 3.4 * len(Y_AXES)), squeeze=False
    )
    colors = plt.get_cmap("tab10")
    styles = ("o-", "s--", "^-.", "v-", "D--", "P-.")  # dotted: the steps-grid references
    # one style per run variant across the panels, so the shared legend reads right in each
    variants = dict.fromkeys(r.get("variant_label", "") for r in pooled if "budget" in r)
    style_of = {v: styles[i % len(styles)] for i, v in enumerate(variants)}
    for col, budget in enumerate(budgets):
        rows = [r for r in pooled if r.get("budget") == budget]
        for ax, (key, name) in zip(axes[:, col], Y_AXES, strict=True):
            for m, method, variant, mine in _lines(steps_rows):
                pts = [(r["accuracy"], r[key]) for r in mine if r[key] is not None]
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ref = f"{method} ({variant or 'steps grid'})"
                    ax.plot(xs, ys, ":", color=colors(m), lw=2.5, alpha=0.45, label=ref)
            for m, method, variant, mine in _lines(rows):
                pts = [(r["accuracy"], r[key]) for r in mine if r[key] is not None]
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    label = method if not variant else f"{method} ({variant})"
                    ax.plot(xs, ys, style_of[variant], color=colors(m), label=label, ms=4)
            ax.set_xlabel("target accuracy")
            ax.set_ylabel(name)
            ax.set_xlim(-0.05, 1.05)
            ax.grid(alpha=0.3)
        nfe = sorted({round(r["nfe_per_image"]) for r in rows if r["nfe_per_image"] is not None})
        span = f"{nfe[0]}" if len(nfe) == 1 else f"{nfe[0]}–{nfe[-1]}"
        axes[0, col].set_title(f"NFE ≤ {budget} (run: {span})")
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(n, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=min(4, len(handles)), frameon=False, fontsize=8)  # fmt: skip
    rows_of_legend = -(-len(handles) // 4)
    fig.tight_layout(rect=(0, 0.035 * rows_of_legend + 0.02, 1, 1))
    return save_figure(fig, path)


def _order(keys: list[str]) -> list[str]:
    """Example keys (``EF``, ``EF · NFE 30 · ...``) in method order, then as written."""
    rank = {m: i for i, m in enumerate(METHODS)}
    return sorted(keys, key=lambda k: rank.get(k.split(" · ")[0], len(rank)))


def _examples(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    ex = result["examples"]
    size = ex["size"]
    rows = []  # (pair label, image index, [(title, image)])
    for label, e in ex["pairs"].items():
        for j, src in enumerate(_decode(e["source"], size)):
            cells = [("source", src)]
            for key in _order(list(e["edits"])):
                edit = e["edits"][key]
                method = key.split(" · ")[0]
                title = f"{method}\n{edit['setting']}".replace(" · ", "\n")
                cells.append((title, _decode(edit["images"], size)[j]))
            rows.append((label, e["indices"][j], cells))
    ncol = max(len(c) for _, _, c in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.2 * ncol, 1.3 * len(rows)), squeeze=False)
    for r, (label, index, cells) in enumerate(rows):
        for c in range(ncol):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(cells):
                ax.axis("off")
                continue
            title, im = cells[c]
            ax.imshow(im.numpy(), cmap="gray", vmin=0, vmax=255)
            if r == 0 or rows[r - 1][0] != label:
                ax.set_title(title, fontsize=7)
        axes[r, 0].set_ylabel(f"{label}\n#{index}", fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    """Write ``editing-tradeoff.png``, ``editing-examples.png`` and, with NFE-sweep rows,
    ``editing-nfe.png`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [
        _tradeoff(result, directory / "editing-tradeoff.png"),
        _examples(result, directory / "editing-examples.png"),
    ]
    if any("budget" in r for r in result["rows"]):
        paths.append(_nfe_panels(result, directory / "editing-nfe.png"))
    return paths
