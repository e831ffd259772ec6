"""``make demo``: edit bundled Fashion-MNIST test images with NGDM and edit-friendly inversion.

    python -m nidiff.demo [--out outputs/demo] [--steps 50] [--seed 0]

For each example (sneaker → sandal, shirt → T-shirt, pullover → coat) it computes the NGDM
weighting map, then edits with NGDM (Algorithm 1), edit-friendly inversion + regeneration, their
combination (per-pixel start times on the edit-friendly maps) and SDEdit, all on the bundled
default model, and writes one comparison figure plus a JSON record of every parameter and of the
bundled classifier's verdict on each result.
"""

from __future__ import annotations

from ._threads import apply_thread_policy

apply_thread_policy()  # this module is a program: its thread policy acts only before torch loads

import argparse
import time
from importlib.metadata import version
from pathlib import Path

import torch

from ._io import write_json
from .bundled import ASSETS, load_bundled, load_bundled_classifier
from .data.fashion_mnist import CLASS_NAMES, class_index
from .data.folder import load_image
from .editing import lam_from_map, ngdm, sdedit, weighting_map
from .editing.ngdm_ef import ngdm_edit_friendly
from .figure import labelled_grid
from .inversion import edit_friendly_invert, edit_friendly_regenerate
from .schedule import leading_grid

EXAMPLES = (
    ("sneaker-0.png", "Sneaker", "Sandal"),
    ("shirt-0.png", "Shirt", "T-shirt/top"),
    ("pullover-0.png", "Pullover", "Coat"),
)
COLUMNS = ("source", "lambda map", "NGDM", "edit-friendly", "NGDM + EF", "SDEdit 0.6")


def run(
    out: Path,
    steps: int = 30,
    seed: int = 0,
    guidance: float = 3.0,
    skip_frac: float = 0.3,
    overwrite: bool = False,
) -> dict:
    """Run the demo and write ``out/demo.png`` and ``out/demo.json``; returns the record."""
    figure, record_path = out / "demo.png", out / "demo.json"
    if not overwrite and (figure.exists() or record_path.exists()):
        raise FileExistsError(f"{figure} exists; pass --overwrite to replace it")
    torch.manual_seed(seed)  # nothing below draws from it; every draw has its own generator
    m = load_bundled("default")
    clf = load_bundled_classifier()
    process, model, null = m.process, m.denoiser, m.denoiser.null_cond()
    grid = leading_grid(m.schedule, steps)
    skip = round(skip_frac * steps)
    rows, record = (
        [],
        {
            "model": "fashion-isotropic",
            "steps": steps,
            "seed": seed,
            "guidance": guidance,
            "ef_skip": skip,
            "sdedit_strength": 0.6,
            "nidiff": version("nidiff"),
            "torch": torch.__version__,
            "edits": [],
        },
    )
    start = time.perf_counter()
    for i, (name, src, tgt) in enumerate(EXAMPLES):
        x0 = load_image(ASSETS / "examples" / name, size=28, channels=1)[None]
        s, t = torch.tensor([class_index(src)]), torch.tensor([class_index(tgt)])
        g = torch.Generator().manual_seed(seed + i)
        wm = weighting_map(model, x0, process, source_cond=s, target_cond=t, n=10, generator=g)
        lam = lam_from_map(wm.A)
        res_ngdm = ngdm(
            model, x0, process, grid, lam, cond=t, guidance=guidance, null_cond=null, generator=g
        )
        inv = edit_friendly_invert(model, x0, process, grid, cond=s, generator=g)
        res_ef = edit_friendly_regenerate(
            model, inv, process, cond=t, guidance=guidance, null_cond=null, skip=skip
        )
        res_mix = ngdm_edit_friendly(
            model, inv, process, lam, cond=t, guidance=guidance, null_cond=null
        )
        res_sde = sdedit(
            model,
            x0,
            process,
            grid,
            strength=0.6,
            cond=t,
            guidance=guidance,
            null_cond=null,
            generator=g,
        )
        edits = [res_ngdm.x0, res_ef.x0, res_mix.x0, res_sde.x0]
        rows.append([x0[0], lam[0] * 2 - 1, *(e[0] for e in edits)])
        with torch.no_grad():
            probs = [clf(e.clamp(-1, 1)).softmax(1)[0] for e in edits]
        record["edits"].append(
            {
                "image": name,
                "source": src,
                "target": tgt,
                "results": {
                    col: {
                        "p_target": float(p[t]),
                        "predicted": CLASS_NAMES[int(p.argmax())],
                        "nfe": r.nfe,
                        "mse_to_source": float((e - x0).square().mean()),
                    }
                    for col, p, r, e in zip(
                        COLUMNS[2:], probs, (res_ngdm, res_ef, res_mix, res_sde), edits, strict=True
                    )
                },
            }
        )
    record["seconds"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    labelled_grid(rows, COLUMNS, [f"{s} -> {t}" for _, s, t in EXAMPLES], figure, scale=4)
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
