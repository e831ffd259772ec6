"""Figures of ``nidiff bench editing``: the fidelity-vs-editability trade-off and example edits.

* ``editing-tradeoff.png``: one column per pair (and the pooled pairs), x = target accuracy;
  top row y = SSIM to the source, bottom row y = background PSNR. One line per method through
  its sweep (in sweep order); the ``source`` row (no edit) is a black star in the SSIM row.
* ``editing-examples.png``: per pair, the first sources and one edit per method at the example
  setting (strength nearest 0.5; ILVR's middle factor), decoded from the result's uint8 hex
  strings.
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
        rows = [r for r in result["rows"] if r["pair"] == label]
        for ax, (key, name) in zip(axes[:, col], Y_AXES, strict=True):
            for m, method in enumerate(METHODS):
                mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["param"])
                pts = [(r["accuracy"], r[key]) for r in mine if r[key] is not None]
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(xs, ys, "o-", color=colors(m), label=method, ms=4)
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


def _examples(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    ex = result["examples"]
    size = ex["size"]
    rows = []  # (pair label, image index, [(title, image)])
    for label, e in ex["pairs"].items():
        for j, src in enumerate(_decode(e["source"], size)):
            cells = [("source", src)]
            for method in METHODS:
                if method in e["edits"]:
                    edit = e["edits"][method]
                    cells.append((f"{method}\n{edit['setting']}", _decode(edit["images"], size)[j]))
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
    """Write ``editing-tradeoff.png`` and ``editing-examples.png`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [
        _tradeoff(result, directory / "editing-tradeoff.png"),
        _examples(result, directory / "editing-examples.png"),
    ]
