"""The bundled classifier's accuracy on a Fashion-MNIST grid written by ``nidiff sample``.

Reads ``GRID`` (a grey 28×28 grid, 2-pixel padding, as ``nidiff sample`` writes it) and its
record ``GRID.json`` (the labels each sample was drawn for and ``--nrow``), cuts the tiles out of
the 8-bit image and prints the share the bundled classifier assigns to their requested class,
overall and per class (what ``nidiff bench generation`` calls target accuracy).

    nidiff sample --model runs/smld/model --sampler langevin --num 200 --nrow 10 --out g.png
    python scripts/grid_accuracy.py g.png
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import numpy as np
import torch

from nidiff.bundled import load_bundled_classifier
from nidiff.data.fashion_mnist import CLASS_NAMES

PAD = 2  # nidiff sample's grid padding


def tiles(grid: np.ndarray, num: int, nrow: int, side: int = 28) -> torch.Tensor:
    """The ``num`` tiles ``(num, 1, side, side)`` of ``grid`` in [-1, 1], row by row."""
    out = []
    for i in range(num):
        r, q = divmod(i, nrow)
        y, x = PAD + r * (side + PAD), PAD + q * (side + PAD)
        out.append(grid[y : y + side, x : x + side])
    return torch.from_numpy(np.stack(out)).float()[:, None] / 127.5 - 1.0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("grid", type=Path, help="grid PNG written by nidiff sample (with GRID.json)")
    args = ap.parse_args(argv)
    record = json.loads(Path(f"{args.grid}.json").read_text())
    labels = torch.tensor(record["labels"])
    params = record["params"]
    params = ast.literal_eval(params) if isinstance(params, str) else params
    nrow = params.get("nrow") or int(np.ceil(np.sqrt(len(labels))))
    from PIL import Image

    grid = np.asarray(Image.open(args.grid).convert("L"))
    x = tiles(grid, len(labels), nrow)
    clf = load_bundled_classifier().eval()
    with torch.no_grad():
        pred = clf(x).argmax(1)
    hit = pred == labels
    print(f"{args.grid}: target accuracy {hit.double().mean():.3f} ({int(hit.sum())}/{len(hit)})")
    for k in labels.unique().tolist():
        mine = labels == k
        print(f"  {CLASS_NAMES[k]:>12}: {hit[mine].double().mean():.2f} ({int(mine.sum())})")


if __name__ == "__main__":
    main()
