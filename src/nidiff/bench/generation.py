r"""Sample quality of the bundled models by sampler and number of steps (GFF paper Table 1 analog).

For each bundled model (isotropic, GFF, edge-preserving) draw class-conditional samples (labels
cycle through the 10 classes) and compare them with the Fashion-MNIST test set in the bundled
classifier's 256-d feature space (:class:`~nidiff.metrics.ClassifierFeatures`; samples are
clamped to [−1, 1] first, as they would be saved as images):

* **FID**: Fréchet distance of the Gaussian fits (not Inception FID: compare only within a run);
* **precision / recall**: improved k-NN precision and recall (k = 3) on the same features;
* **accuracy**: target accuracy of the bundled classifier on the sampled labels.

Rows (samplers), each without guidance at every step count of the preset:

* ``ancestral``: η = 1 (DDPM for isotropic, NI-DDPM for GFF, the EP posterior for edge);
* ``ddim``: η = 0 with :math:`\hat x_0` clipped to [−1, 1], isotropic and GFF only (EP has no
  deterministic sampler);
* ``guided``: classifier-free guidance w = 3 at 50 steps, sampled as the bundled models'
  guided demos (DDIM η = 0 with clipping for isotropic/GFF, the EP posterior for edge).

**NI-SMLD** (``--set smld=DIR``, a model trained with ``nidiff train --process smld``; none is
bundled): its ``ancestral`` row is annealed Langevin on the geometric ladder (GFF paper App. E;
one model call per level) at the preset's ``smld_steps``, next to the bundled NI-DDPM (GFF)
model's ancestral row at the same step counts (the same model calls), and its ``ddim`` row
(η = 0 on the VE schedule) where the preset has one.

Presets: ``full`` = 2,000 samples per cell at 1000/100/50/20/10 steps, all rows (GPU-sized;
NI-SMLD at 1000 and 100 Langevin steps); ``quick`` = 200 samples per cell at 10 steps,
ancestral rows only (about 3 minutes on 2 CPU cores; NI-SMLD at 100 Langevin steps). The
real reference is the whole test set (10,000 images). Needs Fashion-MNIST
(``apt-get install -y dataset-fashion-mnist``, or ``--root``).

    python -m nidiff.bench.generation --quick --json bench-generation.json     # CPU
    python -m nidiff.bench.generation --device cuda --json bench-generation.json  # full
    nidiff bench generation --quick --set smld=runs/smld/model          # + an NI-SMLD model
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nidiff.bundled import MODELS, load_bundled, load_bundled_classifier
from nidiff.data.fashion_mnist import DEFAULT_DIR, load_fashion_mnist_tensors
from nidiff.data.transforms import from_uint8
from nidiff.generate import generate
from nidiff.metrics import ClassifierFeatures, frechet_distance, precision_recall
from nidiff.samplers.registry import pixel_sampling_rule
from nidiff.schedule import own_grid

from ._device import hardware, timed
from ._report import data_run, main_parser, progress, pyplot, report, save_figure

__all__ = ["PRESETS", "Preset", "markdown", "plot", "run"]

SHORT = {"fashion-isotropic": "isotropic", "fashion-gff": "GFF", "fashion-edge": "edge",
         "smld-isotropic": "SMLD isotropic", "smld-gff": "SMLD GFF"}  # fmt: skip
#: The bundled model whose ancestral (NI-DDPM) row is compared with an NI-SMLD model.
DDPM_PEER = "fashion-gff"
GUIDANCE = 3.0
K = 3


@dataclass(frozen=True)
class Preset:
    """Samples per cell, unguided step counts, which rows, and the real reference size."""

    samples: int
    steps: tuple[int, ...]
    ddim: bool  # add the DDIM η = 0 row for isotropic/GFF
    guided_steps: int | None  # steps of the guided row; None: no guided row
    real: int | None = None  # test images used as reference; None: all 10,000
    seed: int = 0
    smld: str | None = None  # an NI-SMLD model directory (nidiff train --process smld)
    smld_steps: tuple[int, ...] = (100,)  # its Langevin steps (and its NI-DDPM peer's)


PRESETS = {
    "quick": Preset(samples=200, steps=(10,), ddim=False, guided_steps=None),
    "full": Preset(samples=2000, steps=(1000, 100, 50, 20, 10), ddim=True, guided_steps=50,
                   smld_steps=(1000, 100)),
}  # fmt: skip


def _sampler_name(kind: str, row: str, smld: bool = False) -> str:
    if kind == "edge":
        return "EP posterior"
    prefix = "NI-" if kind == "gff" else ""
    if smld:
        return f"{prefix}SMLD Langevin" if row == "ancestral" else f"{prefix}SMLD DDIM η = 0, clip"
    return f"{prefix}DDPM η = 1" if row == "ancestral" else f"{prefix}DDIM η = 0, clip"


def _sample(m, row: str, steps: int, n: int, device: str, seed: int, batch: int) -> Tensor:
    rule = pixel_sampling_rule(m.process, stochastic=row == "ancestral")
    grid = own_grid(m.schedule, steps)
    guidance = GUIDANCE if row == "guided" else 1.0
    labels = torch.arange(n) % 10
    out = []
    for i in range(0, n, batch):
        lab = labels[i : i + batch]
        gen = torch.Generator(device).manual_seed(seed + i)
        x = generate(
            m.denoiser,
            rule,
            grid,
            (len(lab), 1, 28, 28),
            noise=m.noise,
            labels=lab,
            guidance=guidance,
            null_class=m.null_class,
            generator=gen,
            device=device,
            prior_std=m.schedule.prior_std,
        )
        out.append(x.clamp(-1, 1).cpu())
    return torch.cat(out)


def run(
    quick: bool = True,
    device: str = "cpu",
    *,
    preset: Preset | None = None,
    models: tuple[str, ...] = MODELS,
    root: str | Path = DEFAULT_DIR,
) -> dict[str, Any]:
    """Sample every cell of the ``quick`` or ``full`` preset (or ``preset``) and measure it;
    with the preset's ``smld`` (an NI-SMLD model directory) also its Langevin and DDIM rows and
    the NI-DDPM peer's (:data:`DDPM_PEER`) ancestral row at ``smld_steps`` (module docstring).

    Returns a JSON-safe dict: the setting (``preset``, ``device``, ``hardware``, ``torch``,
    ``threads``, ``samples``, ``steps``, ``real``, ``k``, ``guidance``), ``seconds`` (wall),
    ``classifier_test_accuracy`` (the bundled classifier on the reference images) and ``rows``:
    one dict per cell with ``model``, ``row`` (``ancestral`` / ``ddim`` / ``guided``),
    ``sampler``, ``steps``, ``guidance``, ``n``, ``fid``, ``precision``, ``recall``,
    ``accuracy`` and ``seconds`` (sampling time).

    Raises:
        FileNotFoundError: the Fashion-MNIST test set is not under ``root``.
    """
    start = time.perf_counter()
    name = "quick" if quick else "full"
    p = preset if preset is not None else PRESETS[name]
    if preset is not None:
        name = "custom"
    for m in models:
        if m not in MODELS:
            raise ValueError(f"unknown bundled model {m!r}; choose from {list(MODELS)}")
    _check_smld(p.smld)
    xt, yt = load_fashion_mnist_tensors(root, "test")  # FileNotFoundError says how to install
    if p.real is not None:
        xt, yt = xt[: p.real], yt[: p.real]
    clf = load_bundled_classifier(device).eval()
    feats = ClassifierFeatures(clf, batch_size=500)
    real = from_uint8(xt)[:, None]
    real_f = feats(real)
    real_pred = clf.classes(real_f)
    batch = 2500 if torch.device(device).type == "cuda" else 100

    rows: list[dict[str, Any]] = []
    for model, m, cells in _cells(p, models, device):
        kind = m.spec.kind
        for row, steps, w in cells:
            x, secs = timed(device, _sample, m, row, steps, p.samples, device, p.seed + steps,
                            batch)  # fmt: skip
            progress("generation", f"{model} {row} {steps} steps, {p.samples} samples", secs)
            f = feats(x)
            labels = torch.arange(p.samples) % 10
            pred = clf.classes(f)
            pr = precision_recall(real_f, f, K)
            rows.append(
                {
                    "model": model,
                    "row": row,
                    "sampler": _sampler_name(kind, row, model.startswith("smld")),
                    "steps": steps,
                    "guidance": w,
                    "n": p.samples,
                    "fid": frechet_distance(f, real_f),
                    "precision": pr.precision,
                    "recall": pr.recall,
                    "accuracy": float((pred == labels).double().mean()),
                    "seconds": secs,
                }
            )
    return {
        "preset": name,
        "device": str(device),
        "hardware": hardware(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "samples": p.samples,
        "steps": list(p.steps),
        "smld": None if p.smld is None else str(Path(p.smld).resolve()),
        "smld_steps": list(p.smld_steps) if p.smld is not None else [],
        "guided_steps": p.guided_steps,
        "guidance": GUIDANCE,
        "real": len(xt),
        "k": K,
        "classifier_test_accuracy": float((real_pred == yt).double().mean()),
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }


def _check_smld(directory: str | None) -> None:
    """``smld`` must be a model directory trained on a VE schedule (NI-SMLD)."""
    from nidiff.training.checkpoint import read_config

    if directory is None:
        return
    schedule = read_config(directory)["process"]["schedule"]
    if schedule.get("kind") != "ve":
        raise ValueError(
            f"smld={directory} is not an NI-SMLD model (its schedule is {schedule.get('kind')!r}"
            "); train one with nidiff train --process smld"
        )


def _cells(p: Preset, models: tuple[str, ...], device: str):
    """``(model name, loaded model, [(row, steps, guidance), ...])`` for every model run."""
    from nidiff.training.checkpoint import load_model

    smld = p.smld
    extra = [s for s in p.smld_steps if s not in p.steps] if smld is not None else []
    for model in models:
        m = load_bundled(model, device)
        kind = m.spec.kind
        more = extra if model == DDPM_PEER else []
        cells = [("ancestral", s, 1.0) for s in (*p.steps, *more)]
        if p.ddim and kind != "edge":
            cells += [("ddim", s, 1.0) for s in p.steps]
        if p.guided_steps is not None:
            cells.append(("guided", p.guided_steps, GUIDANCE))
        yield model, m, cells
    if smld is not None:
        m = load_model(smld, device=device)
        cells = [("ancestral", s, 1.0) for s in p.smld_steps]
        if p.ddim:
            cells += [("ddim", s, 1.0) for s in p.steps]
        yield f"smld-{m.spec.kind}", m, cells


def markdown(result: dict[str, Any]) -> str:
    """The result as a markdown table: one line per (model, sampler), one column per steps;
    each cell is ``FID / precision / recall / accuracy``."""
    rows = result["rows"]
    steps = sorted({r["steps"] for r in rows}, reverse=True)
    lines = [
        f"Generation, {result['preset']} preset: {result['samples']} class-conditional samples "
        f"per cell vs {result['real']} Fashion-MNIST test images, bundled-classifier features "
        f"(FID is not Inception FID), precision/recall k = {result['k']}; {result['hardware']}, "
        f"{result['threads']} threads, {result['seconds']:.0f} s.",
        "",
        "Cells: FID ↓ / precision ↑ / recall ↑ / target accuracy ↑.",
        "",
        "| model | sampler | " + " | ".join(f"{s} steps" for s in steps) + " |",
        "|---|---|" + "---:|" * len(steps),
    ]
    keys: list[tuple[str, str]] = []
    for r in rows:
        if (r["model"], r["row"]) not in keys:
            keys.append((r["model"], r["row"]))
    for model, row in keys:
        mine = [r for r in rows if r["model"] == model and r["row"] == row]
        by_steps = {r["steps"]: r for r in mine}
        sampler = mine[0]["sampler"] + (f", w = {mine[0]['guidance']:g}" if row == "guided" else "")
        cells = [
            f"{c['fid']:.2f} / {c['precision']:.2f} / {c['recall']:.2f} / {c['accuracy']:.3f}"
            if (c := by_steps.get(s))
            else "–"
            for s in steps
        ]
        lines.append(f"| {SHORT.get(model, model)} | {sampler} | " + " | ".join(cells) + " |")
    lines += ["", f"Classifier accuracy on the reference: {result['classifier_test_accuracy']:.3f}"]
    return "\n".join(lines)


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    """``directory/generation.png``: FID against the number of steps (log x) for each (model,
    sampler) row, and a second panel with precision (solid) and recall (dashed); the guided row,
    sampled at one step count, is a single marker."""
    plt = pyplot()
    fig, (ax_fid, ax_pr) = plt.subplots(1, 2, figsize=(10, 4))
    keys = list(dict.fromkeys((r["model"], r["row"]) for r in result["rows"]))
    for i, (model, row) in enumerate(keys):
        mine = sorted(
            (r for r in result["rows"] if (r["model"], r["row"]) == (model, row)),
            key=lambda r: r["steps"],
        )
        steps = [r["steps"] for r in mine]
        style = {"color": f"C{i}", "marker": "o", "ms": 4}
        label = f"{SHORT.get(model, model)}, {mine[0]['sampler']}"
        if row == "guided":
            label += f", w = {mine[0]['guidance']:g}"
        ax_fid.plot(steps, [r["fid"] for r in mine], label=label, **style)
        ax_pr.plot(steps, [r["precision"] for r in mine], **style)
        ax_pr.plot(steps, [r["recall"] for r in mine], ls="--", mfc="none", **style)
    ticks = sorted({r["steps"] for r in result["rows"]})
    for ax in (ax_fid, ax_pr):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(s) for s in ticks])
        ax.minorticks_off()
        ax.set_xlabel("sampling steps")
        ax.grid(alpha=0.3, which="both")
    ax_fid.set_ylabel("FID (classifier features) ↓")
    ax_pr.set_ylabel("precision (solid), recall (dashed) ↑")
    ax_pr.set_ylim(0, 1)
    ax_fid.legend(fontsize=7)
    fig.suptitle(
        f"Generation, {result['preset']} preset: {result['samples']} samples per point vs "
        f"{result['real']} test images, k = {result['k']}",
        fontsize=9,
    )
    return [save_figure(fig, directory / "generation.png")]


def main(argv: list[str] | None = None) -> None:
    ap = main_parser(
        "Sample quality (classifier FID, precision/recall, accuracy) of the bundled "
        "models by sampler and steps.",
        root=True,
        presets=PRESETS,
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="200 samples, 10 steps, ancestral only (default: full, 2,000 samples, "
        "1000/100/50/20/10 steps, DDIM and guided rows)",
    )
    a = ap.parse_args(argv)
    result = data_run(
        run, quick=a.quick, device=a.device, root=a.root, preset=a.preset, presets=PRESETS,
        assignments=a.assignments,
    )  # fmt: skip
    report(result, markdown, a.json, name="generation", out=a.out, plot=plot)


if __name__ == "__main__":
    main()
