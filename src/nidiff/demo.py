"""``make demo``: edit bundled Fashion-MNIST test images with NGDM and edit-friendly inversion.

    python -m nidiff.demo [--out outputs/demo] [--steps 30] [--seed 0]

For each example (sneaker → sandal, shirt → T-shirt, pullover → coat) it edits with NGDM
(Algorithm 1), edit-friendly inversion + regeneration, their combination (per-pixel start
times on the edit-friendly maps) and SDEdit, on the bundled default model, and writes one
comparison figure plus a JSON record of every parameter and of the bundled classifier's verdict
on each result (under each image of the figure: ``p``, its probability of the target class).

**Settings: those of ``nidiff edit``.** Every method runs through the registry
(:data:`nidiff.methods.METHODS`) with ``nidiff edit``'s defaults on pixel models
(:func:`nidiff.methods.method_defaults`: the editing benchmark's point of each method with
target accuracy >= 0.9 and the best fidelity, RESULTS.md "Default settings of nidiff edit"),
so the demo shows what a user gets without options, not settings of its own. Each method
draws from its own generator seeded ``seed + row`` (as ``nidiff edit --seed``), so NGDM and
NGDM+EF compute the same weighting map λ from the same draws: the λ column, in the colour scale
of the bar at the right.
"""

from __future__ import annotations

from ._threads import apply_thread_policy

apply_thread_policy()  # this module is a program: its thread policy acts only before torch loads

import argparse
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from ._io import write_json
from .bundled import ASSETS, load_bundled, load_bundled_classifier
from .data.fashion_mnist import CLASS_NAMES, class_index
from .data.folder import load_image
from .figure import labelled_grid
from .methods import METHODS, EditCall, EditOptions, method_defaults
from .models.space import PixelSpace

EXAMPLES = (
    ("sneaker-0.png", "Sneaker", "Sandal"),
    ("shirt-0.png", "Shirt", "T-shirt/top"),
    ("pullover-0.png", "Pullover", "Coat"),
)
#: The demo's methods (registry names), one column each after the source and λ.
DEMO_METHODS = ("ngdm", "ef", "ngdm-ef", "sdedit")


def settings(method: str, steps: int) -> dict[str, Any]:
    """``nidiff edit``'s options of ``method`` on a pixel model at ``steps`` (its
    :func:`~nidiff.methods.method_defaults`, a skip as ``round(skip_frac · steps)``): the
    :class:`~nidiff.methods.EditOptions` fields that apply to it."""
    d = method_defaults(method, latent=False)
    opts = {"steps": steps, "guidance": d.get("guidance", EditOptions.guidance)}
    applies = METHODS[method].options
    if "skip" in applies:
        opts["skip"] = round(d["skip_frac"] * steps)
    if "strength" in applies:
        opts["strength"] = d["strength"]
    return opts


def column(method: str, opts: dict[str, Any]) -> str:
    """A column header: the method's label and its settings (``s`` strength, ``w`` guidance)."""
    parts = [METHODS[method].label]
    if "strength" in opts:
        parts.append(f"s={opts['strength']:g}")
    if "skip" in opts:
        parts.append(f"skip {opts['skip']}")
    if opts["guidance"] != EditOptions.guidance:
        parts.append(f"w={opts['guidance']:g}")
    return " ".join(parts)


def run(out: Path, steps: int = 30, seed: int = 0, overwrite: bool = False) -> dict:
    """Run the demo and write ``out/demo.png`` and ``out/demo.json``; returns the record."""
    figure, record_path = out / "demo.png", out / "demo.json"
    if not overwrite and (figure.exists() or record_path.exists()):
        raise FileExistsError(f"{figure} exists; pass --overwrite to replace it")
    torch.manual_seed(seed)  # nothing below draws from it; every draw has its own generator
    space = PixelSpace(load_bundled("default"))
    clf = load_bundled_classifier()
    grid = space.grid(steps)
    opts = {name: settings(name, steps) for name in DEMO_METHODS}
    columns = ("source", "lambda (NGDM's map)", *(column(n, opts[n]) for n in DEMO_METHODS))
    rows, captions = [], []
    record: dict[str, Any] = {
        "model": "fashion-isotropic",
        "steps": steps,
        "seed": seed,
        "settings": {METHODS[n].label: opts[n] for n in DEMO_METHODS},
        "nidiff": version("nidiff"),
        "torch": torch.__version__,
        "edits": [],
    }
    start = time.perf_counter()
    for i, (name, src, tgt) in enumerate(EXAMPLES):
        x0 = load_image(ASSETS / "examples" / name, size=28, channels=1)[None]
        s, t = space.condition([src, tgt])
        results = {}
        for method in DEMO_METHODS:
            g = torch.Generator().manual_seed(seed + i)
            call = EditCall(space, x0, s, t, grid, g, EditOptions(**opts[method]))
            res, extra = METHODS[method].run(call)
            results[method] = (res, res.nfe + extra)
        t_id = class_index(tgt)
        with torch.no_grad():
            images = [x0, *(r.x0.clamp(-1, 1) for r, _ in results.values())]
            probs = [clf(x).softmax(1)[0] for x in images]
        lam = results["ngdm"][0].lam[0][:1].float()
        rows.append([x0[0], lam, *(r.x0[0] for r, _ in results.values())])
        shown = [f"p = {float(p[t_id]):.2f}" for p in probs]
        captions.append([shown[0], "", *shown[1:]])  # none under λ
        record["edits"].append(
            {
                "image": name,
                "source": src,
                "target": tgt,
                "source_p_target": float(probs[0][t_id]),
                "results": {
                    METHODS[m].label: {
                        "p_target": float(p[t_id]),
                        "predicted": CLASS_NAMES[int(p.argmax())],
                        "nfe": nfe,
                        "mse_to_source": float((res.x0 - x0).square().mean()),
                    }
                    for (m, (res, nfe)), p in zip(results.items(), probs[1:], strict=True)
                },
            }
        )
    record["seconds"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    title = (
        f"nidiff edit's defaults, bundled model, {steps} steps, seed {seed}; "
        "p: the bundled classifier's probability of the target class"
    )
    labelled_grid(rows, columns, [f"{s} -> {t}" for _, s, t in EXAMPLES], figure, scale=4,
                  title=title, captions=captions, map_column=1)  # fmt: skip
    write_json(record_path, record)
    return record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    p.add_argument("--steps", type=int, default=30, help="sampling steps (leading grid)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    a = p.parse_args(argv)
    rec = run(a.out, a.steps, a.seed, overwrite=a.overwrite)
    for e in rec["edits"]:
        verdicts = ", ".join(f"{k}: p={v['p_target']:.2f}" for k, v in e["results"].items())
        print(f"{e['source']} → {e['target']}: {verdicts}")
    print(f"wrote {a.out / 'demo.png'} and {a.out / 'demo.json'} in {rec['seconds']:.0f} s")


if __name__ == "__main__":
    main()
