r"""Fidelity vs editability of every editing method on Fashion-MNIST (NGDM / EF Table 1 analog).

**Experiment.** For each pair — sneaker → sandal (7 → 5), pullover → coat (2 → 4), shirt →
T-shirt (6 → 0) — the first ``images`` test images of the source class (file order) are edited
to the target class with the bundled class-conditional isotropic model (``fashion-isotropic``,
1000-step linear schedule) on the ``steps``-step linspace grid, target guidance ``w = 3``. The
methods, their sweeps (strength :math:`s`: start time :math:`t_k \le s\,t_{max}`; ILVR's
factor), the shared work and the NFE formulas are in :mod:`nidiff.bench._editing_methods`.
Edits are clamped to [−1, 1] (as saved images) before they are measured.

**Metrics** per (pair, method, setting), on the ``images`` edits:

* **FID** and **KID** of the edits vs the 1,000 real test images of the target class, in the
  bundled classifier's 256-d feature space (:class:`~nidiff.metrics.ClassifierFeatures`; not
  Inception: compare within this table only). FID from ``n`` samples is biased upwards,
  strongly so when ``n`` is below the feature dimension (quick: ``n = 12``), so read the
  *unbiased* KID too (cubic-kernel MMD², 100 subsets of size ``n``); the ``target (train)`` row
  — ``n`` *real* training images of the target class — shows what real target items score at
  this ``n``, and the ``source`` row (the unedited sources) what no edit at all scores;
* **target acc**: the fraction the bundled classifier assigns to the target class;
* **SSIM** (Gaussian window σ = 1.5) and **PSNR** (dB, range 2, capped at 100 dB for identical
  images) to the source image;
* **bg PSNR / bg SSIM**: the same outside the pair's *edit region* ``E`` (background
  preservation; :func:`~nidiff.metrics.masked_psnr`, :func:`~nidiff.metrics.masked_ssim` with a
  7 × 7 box window). ``E`` is defined independently of every method and every image: the pixels
  where the mean training image of the source class and that of the target class differ by more
  than 0.2 (a tenth of the [−1, 1] range), dilated by 1 px (3 × 3 max). It covers what a typical
  target item has and a typical source item lacks (sleeves, straps, hems) and leaves the shared
  body and the empty canvas as background. (Or-ing in each source's own foreground was measured
  and rejected: for tops it leaves only 14–21 % of the pixels, thin borders where no SSIM
  window fits.) Regions cover 55 % / 45 % / 51 % of the pixels for the three pairs;
* **diversity**: mean pairwise per-pixel MSE (:func:`~nidiff.metrics.diversity`) between ``K``
  edits of each of the first ``diversity_inputs`` sources, made with independent noise (the
  batch carries ``K − 1`` extra copies of those sources; the copies are excluded from every
  other metric). Deterministic methods (DDIM inversion) give 0; DiffEdit varies only through
  its mask's noise draws;
* **s/img**: wall seconds per edited image (batch incl. copies; shared work charged in full);
* **NFE/img**: network evaluations per image (model calls × batch ÷ images; a guided step
  counts 2).

The ``pooled`` table pools the three pairs: FID/KID of all edits vs all three target classes'
test images, the other columns averaged over images. With ``repeats > 1`` (full preset: 3)
everything but the images is redrawn with seeds offset by ``10⁶·repeat`` and cells read
mean ± standard deviation over repeats.

**Solver, grid shift and NFE sweep** (fields with defaults that reproduce the table above bit
for bit): ``sampler`` is the step rule of SDEdit, NGDM, EF, NGDM+EF and ILVR (``ddpm``: their
own DDPM, η = 1; e.g. ``dpm++2m-sde``, whose noise EF records as LEDITS++ does); ``shift``
moves the grid toward high noise (:func:`~nidiff.schedule.shift_grid`; ``1``: none); ``nfe``
replaces the ``steps`` grid by a sweep of total budgets: at each budget every method runs the
most steps its total NFE allows, from :math:`t_s = \lfloor s\,t_{max}\rfloor` for every budget
(:mod:`nidiff.bench._editing_nfe`: the NFE of each method and the grids), rows labelled
``s = 0.5 · NFE 30`` with the budget and the steps run (``budget``, ``steps``), and a figure with
one panel per budget (``editing-nfe.png``). The reported NFE is the counted one, checked against
the formula. ``map_study`` adds the weighting-map study (:mod:`nidiff.bench._editing_map`):
maps of fewer draws against ``map_reference``-draw maps (``map_quality`` in the result).
Runs of different settings with the same seed combine with ``--merge`` (the rows get the
settings that differ in their labels; :mod:`nidiff.bench._editing_merge`). ``per_image`` keeps
each pooled row's per-image accuracy, SSIM and bg PSNR (``row["per_image"]``), from which the
matched-accuracy comparison draws bootstrap intervals (:mod:`nidiff.bench._editing_compare`).

Presets: ``quick`` (CPU, one thread, about 5 minutes: 12 images per pair, 10 steps,
s ∈ {0.3, 0.5}, ILVR N = 4, diversity K = 3 on 2 inputs, map and mask from 4 draws; a smoke
test of the trends — NGDM's per-pixel starts round up to the 10-step grid, so its background
(λ ≈ 0.007, T_k ≈ 30) restarts at t = 112) and ``full`` (GPU: 200 images, 100 steps as the
papers, s ∈ {0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0}, ILVR N ∈ {2, 4, 7, 14}, K = 8 on 10 inputs,
the papers' 10 draws, 3 repeats).
Needs Fashion-MNIST (``apt-get install -y dataset-fashion-mnist``).

    python -m nidiff.bench.editing --quick --out bench-editing   # CPU
    python -m nidiff.bench.editing --device cuda --out bench-editing

A preset too long for one command runs as several of one repeat each, merged afterwards
(:mod:`nidiff.bench._editing_merge`; the merged rows equal those of one multi-repeat run)::

    for s in 0 1000000 2000000; do
        python -m nidiff.bench.editing --device cuda --set repeats=1 --set seed=$s --json r$s.json
    done
    python -m nidiff.bench.editing --merge r0.json r1000000.json r2000000.json --out bench-editing
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nidiff.bundled import load_bundled, load_bundled_classifier
from nidiff.data.fashion_mnist import DEFAULT_DIR, load_fashion_mnist_tensors
from nidiff.data.transforms import from_uint8, to_uint8
from nidiff.metrics import ClassifierFeatures
from nidiff.samplers.registry import SAMPLERS
from nidiff.schedule import linspace_grid, shift_grid
from nidiff.schedule.shift import check_shift

from ._device import hardware
from ._editing_compare import goal_rows
from ._editing_map import map_rows, map_table
from ._editing_methods import METHODS, RULE_METHODS, SEED_CODES, Task, run_methods
from ._editing_metrics import aggregate, edit_region, measure, per_image, reference, summary
from ._editing_nfe import edit_grid, nfe_of, steps_for
from ._editing_plot import plot
from ._editing_report import REFERENCES, markdown
from ._report import data_run, main_parser, progress, report
from .overhead import CountingModel

__all__ = [
    "METHODS",
    "PAIRS",
    "PRESETS",
    "Preset",
    "goal_rows",
    "main",
    "markdown",
    "plot",
    "run",
]

MODEL = "fashion-isotropic"
PAIRS = ((7, 5), (2, 4), (6, 0))  # sneaker → sandal, pullover → coat, shirt → T-shirt


@dataclass(frozen=True)
class Preset:
    """Sizes and sweeps of one run (see the module)."""

    images: int  # sources per pair
    steps: int  # N of the linspace grid
    strengths: tuple[float, ...]  # s of SDEdit, NGDM, EF, NGDM+EF, DDIM, Cycle, DiffEdit
    ilvr_factors: tuple[int, ...]
    diversity_inputs: int = 2
    diversity_k: int = 3
    map_draws: int = 10
    guidance: float = 3.0
    repeats: int = 1
    pairs: tuple[tuple[int, int], ...] = PAIRS
    seed: int = 0
    examples: int = 2  # sources per pair in editing-examples.png
    real: int | None = None  # target-class test images as reference; None: all 1,000
    methods: tuple[str, ...] = METHODS  # a subset runs only those (and their shared work)
    sampler: str = "ddpm"  # step rule of SDEdit, NGDM, EF, NGDM+EF, ILVR (ddpm: their own)
    shift: float = 1.0  # grid shift toward high noise (1: none)
    nfe: tuple[int, ...] = ()  # NFE sweep: total evaluations per edit; (): the steps grid
    map_study: tuple[int, ...] = ()  # weighting-map draws compared with map_reference draws
    map_reference: int = 20
    per_image: bool = False  # pooled rows keep per-image values (the goal's bootstrap intervals)


PRESETS = {
    "quick": Preset(images=12, steps=10, strengths=(0.3, 0.5), ilvr_factors=(4,), map_draws=4),
    # What a 2-core CPU does in about half an hour: the RESULTS.md table until a GPU run exists.
    "cpu": Preset(
        images=32, steps=20, strengths=(0.3, 0.5, 0.7), ilvr_factors=(4,), diversity_inputs=4
    ),
    "full": Preset(
        images=200,
        steps=100,
        strengths=(0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0),
        ilvr_factors=(2, 4, 7, 14),
        diversity_inputs=10,
        diversity_k=8,
        repeats=3,
    ),
}


def _hex(x: Tensor) -> list[str]:
    """Images ``(B, 1, H, W)`` as hex strings of their uint8 pixels (compact JSON examples)."""
    return [bytes(to_uint8(im[0]).flatten().tolist()).hex() for im in x]


def _row(
    pair: str, method: str, setting: str, param, n: int, seed, t_start, m: dict, sweep=None
) -> dict:
    row = {
        "pair": pair,
        "method": method,
        "setting": setting,
        "param": param,
        "n": n,
        "seed": seed,
        "t_start": t_start,
    }
    if sweep is not None:  # NFE sweep rows: the budget and the steps run
        row |= {"budget": sweep[0], "steps": sweep[1]}
    return row | m


def _check(p: Preset) -> None:
    """Refuse a preset the run cannot do, before any work."""
    if p.images < 2 or not 0 <= p.diversity_inputs <= p.images or p.repeats < 1:
        raise ValueError(f"{p} needs images >= 2, diversity_inputs <= images, repeats >= 1")
    unknown = [m for m in p.methods if m not in METHODS]
    if unknown or not (p.methods or p.map_study):  # a map study alone needs no method
        raise ValueError(f"methods {list(p.methods)}: choose among {', '.join(METHODS)}")
    if p.sampler not in SAMPLERS:
        raise ValueError(f"sampler {p.sampler!r}: choose among {', '.join(SAMPLERS)}")
    inverting = [m for m in ("EF", "NGDM+EF") if m in p.methods]
    if inverting and not SAMPLERS[p.sampler].stochastic:
        raise ValueError(
            f"sampler {p.sampler!r} is deterministic: {' and '.join(inverting)} record the "
            "noise of a stochastic one (ddpm, dpm++2m-sde, euler-ancestral, ...)"
        )
    check_shift(p.shift)
    for name, values in (("nfe", p.nfe), ("map_study", p.map_study)):
        if any(isinstance(v, bool) or int(v) != v or v < 1 for v in values):
            raise ValueError(f"{name}={list(values)}: every value must be an integer >= 1")
    if p.map_reference < 1:
        raise ValueError(f"map_reference={p.map_reference} must be >= 1")


def _rule_name(p: Preset, method: str) -> str:
    """The sampler ``method`` steps with in this run (its own DDPM for the other methods)."""
    return p.sampler if method in RULE_METHODS else "ddpm"


def _edits(task: Task, p: Preset, g: int):
    """``(budget, edit)`` for every edit of one pair: the ``steps`` grid (budget ``None``) or,
    with an NFE sweep, each budget in turn with the steps it allows each method. Every edit's
    counted evaluations are checked against :func:`nfe_of` (``RuntimeError`` otherwise)."""
    B = len(task.x0)
    if not p.nfe:
        sweep = [(None, None, "")]
    else:
        sweep = [({m: steps_for(m, b, g=g, map_draws=p.map_draws, sampler=_rule_name(p, m))
                   for m in p.methods}, b, f" · NFE {b}") for b in p.nfe]  # fmt: skip
    schedule = task.process.schedule
    for plan, budget, suffix in sweep:
        if plan is None:
            edits = run_methods(task, p.strengths, p.ilvr_factors, p.methods)
        else:

            def grids(method: str, s: float | None, plan: dict = plan):
                return edit_grid(schedule, s, plan[method], p.shift)

            edits = run_methods(task, p.strengths, p.ilvr_factors, p.methods, grids=grids,
                                suffix=suffix)  # fmt: skip
        for e in edits:
            expect = nfe_of(e.method, e.steps, g=g, map_draws=p.map_draws,
                            sampler=_rule_name(p, e.method))  # fmt: skip
            if e.nfe != expect * B:  # the reported NFE is the counted one
                raise RuntimeError(
                    f"{e.method} {e.setting}: counted {e.nfe / B:g} network evaluations per "
                    f"image, the NFE formula says {expect}"
                )
            yield budget, e


@dataclass(frozen=True)
class _Pair:
    label: str
    source: int
    target: int
    indices: Tensor  # test-set indices of the sources
    x0: Tensor  # (n, 1, H, W) sources, CPU
    region: Tensor  # (1, 1, H, W) edit region
    train_target: Tensor  # (n, 1, H, W) real training images of the target class
    real: Tensor  # features of the target class's test images


@torch.no_grad()
def run(
    quick: bool = True,
    device: str | torch.device = "cpu",
    *,
    preset: Preset | None = None,
    root: str | Path = DEFAULT_DIR,
) -> dict[str, Any]:
    """Edit every pair with every method and setting of the preset; measure (module docs).

    Returns a JSON-safe dict: the setting (``preset``, its fields under ``config``, ``model``,
    ``device``, ``hardware``, ``torch``, ``threads``, ``seeds``), ``pairs`` (label, classes,
    source test indices, edit-region fraction), ``rows`` (per pair — or ``"pooled"`` —, method
    and setting: ``param``, ``n``, ``seed``, ``t_start`` and the metrics ``fid``, ``kid``,
    ``accuracy``, ``ssim``, ``psnr``, ``bg_psnr``, ``bg_ssim``, ``diversity``,
    ``seconds_per_image``, ``nfe_per_image``, each a float or ``None``; ``std`` with
    ``repeats > 1``), ``examples`` (uint8 hex images of the first ``examples`` sources per pair
    and their edits at the example settings), ``classifier_accuracy`` (on the target classes'
    test images) and ``seconds``.

    Raises:
        FileNotFoundError: Fashion-MNIST is not under ``root``.
        ValueError: a preset with fewer than 2 images or more diversity inputs than images.
    """
    start = time.perf_counter()
    name = "custom" if preset is not None else ("quick" if quick else "full")
    p = preset if preset is not None else PRESETS[name]
    _check(p)
    dev = torch.device(device)
    xt, yt = load_fashion_mnist_tensors(root, "test")
    xtr, ytr = load_fashion_mnist_tensors(root, "train")
    loaded = load_bundled(MODEL, dev)
    clf = load_bundled_classifier(dev).eval()
    feats = ClassifierFeatures(clf, batch_size=500)
    pairs = []
    for s, t in p.pairs:
        idx = (yt == s).nonzero().flatten()[: p.images]
        if len(idx) < p.images:
            raise ValueError(f"class {s} has only {len(idx)} test images")
        pairs.append(
            _Pair(
                f"{loaded.class_names[s]} → {loaded.class_names[t]}",
                s,
                t,
                idx,
                from_uint8(xt[idx])[:, None],
                edit_region(xtr, ytr, s, t),
                from_uint8(xtr[ytr == t][: p.images])[:, None],
                feats(from_uint8(xt[yt == t][: p.real])[:, None]),
            )
        )
    real_pooled = torch.cat([q.real for q in pairs])
    hits = [clf.classes(q.real) == q.target for q in pairs]
    examples = {
        q.label: {
            "indices": q.indices[: p.examples].tolist(),
            "source": _hex(q.x0[: p.examples]),
            "edits": {},
        }
        for q in pairs
    }
    ex_s = min(p.strengths, key=lambda s: abs(s - 0.5)) if p.strengths else None
    ex_f = p.ilvr_factors[len(p.ilvr_factors) // 2] if p.ilvr_factors else None
    counter = CountingModel(loaded.denoiser, dev)
    rule = None if p.sampler == "ddpm" else loaded.process.sampler(p.sampler)
    grid = shift_grid(linspace_grid(loaded.schedule, p.steps), loaded.schedule, p.shift)
    g = 1 if p.guidance == 1 else 2
    map_parts: list[dict] = []
    per_repeat = []
    for rep in range(p.repeats):
        rows: list[dict] = []
        pooled: dict[tuple, list[dict]] = defaultdict(list)
        meta: dict[tuple, tuple] = {}
        for i, q in enumerate(pairs):
            kinds = REFERENCES if rep == 0 else ()
            for kind in kinds:
                part = reference(
                    kind, q.x0 if kind == "source" else q.train_target, q.target, feats, clf
                )
                pooled[(kind, "–")].append(part)
                meta[(kind, "–")] = (None, None, None, None)
                rows.append(
                    _row(q.label, kind, "–", None, p.images, None, None, summary([part], q.real))
                )
            d, K = p.diversity_inputs, p.diversity_k
            x0 = q.x0.to(dev)
            batch = torch.cat([x0] + [x0[:d]] * (K - 1)) if d and K > 1 else x0
            src = torch.full((len(batch),), q.source, dtype=torch.long, device=dev)
            task = Task(
                counter,
                loaded.process,
                grid,
                batch,
                src,
                torch.full_like(src, q.target),
                p.guidance,
                loaded.denoiser.null_cond(),
                p.map_draws,
                p.seed + 10**6 * rep,
                i,
                rule,
            )
            if rep == 0 and p.map_study:
                sources = replace(task, x0=x0, source=src[: len(x0)], target=task.target[: len(x0)],
                                  shared={})  # fmt: skip
                map_parts += map_rows(sources, q.label, p.map_study, p.map_reference)
                progress("editing", f"{q.label}: map study n = {list(p.map_study)}")
            for budget, e in _edits(task, p, g):
                where = f"repeat {rep + 1}/{p.repeats}, " if p.repeats > 1 else ""
                progress("editing", f"{where}{q.label}: {e.method} {e.setting}", e.seconds)
                part = measure(e.x, q.x0, q.region, q.target, d, K, feats, clf)
                part.update(nfe=e.nfe, seconds=e.seconds, batch=len(batch))
                sweep = None if budget is None else (budget, e.steps)
                pooled[(e.method, e.setting)].append(part)
                meta[(e.method, e.setting)] = (e.param, e.seed, e.t_start, sweep)
                rows.append(
                    _row(
                        q.label,
                        e.method,
                        e.setting,
                        e.param,
                        p.images,
                        e.seed,
                        e.t_start,
                        summary([part], q.real),
                        sweep,
                    )
                )
                if rep == 0 and e.param == (ex_f if e.method == "ILVR" else ex_s):
                    key = e.method if budget is None else f"{e.method} · NFE {budget}"
                    examples[q.label]["edits"][key] = {
                        "setting": e.setting,
                        "images": _hex(e.x[: p.examples]),
                    }
        for (method, setting), parts in pooled.items():
            n = sum(len(part["feats"]) for part in parts)
            param, seed, t_start, sweep = meta[(method, setting)]
            row = _row("pooled", method, setting, param, n, seed, t_start,
                       summary(parts, real_pooled), sweep)  # fmt: skip
            if p.per_image and parts[0]["ssim"] is not None:  # not the target's own images
                row["per_image"] = per_image(parts)
            rows.append(row)
        per_repeat.append(rows)

    out = {
        "preset": name,
        "config": asdict(p) | {"example_strength": ex_s, "example_ilvr_factor": ex_f},
        "model": MODEL,
        "device": str(dev),
        "hardware": hardware(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seeds": {
            "formula": "preset.seed + 10**6 * repeat + 10**4 * pair + 100 * code + setting",
            "codes": SEED_CODES,
        },
        "pairs": [
            {
                "label": q.label,
                "source": q.source,
                "target": q.target,
                "indices": q.indices.tolist(),
                "region_fraction": float(q.region.mean()),
            }
            for q in pairs
        ],
        "rows": aggregate(per_repeat),
        "examples": {"size": list(xt.shape[1:]), "pairs": examples},
        "classifier_accuracy": float(torch.cat(hits).double().mean()),
        "seconds": time.perf_counter() - start,
    }
    if p.map_study:
        out["map_quality"] = map_table(map_parts, p.map_reference)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = main_parser(
        "Fidelity vs editability of NGDM, EF, NGDM+EF, SDEdit, ILVR, DDIM inversion, "
        "CycleDiffusion and DiffEdit on Fashion-MNIST class edits.",
        root=True,
        presets=PRESETS,
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="12 images/pair, 10 steps, 2 strengths (default: full, 200 images, "
        "100 steps, 7 strengths, 3 repeats)",
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="RESULT.json",
        help="instead of running, merge runs of one repeat each (--set repeats=1 --set "
        "seed=0, 1000000, 2000000, ...) into one result of several repeats",
    )
    a = ap.parse_args(argv)
    if a.merge:
        from ._editing_merge import load_results, merge

        try:
            result = merge(load_results(a.merge), REFERENCES)
        except (FileNotFoundError, ValueError) as err:
            ap.exit(2, f"error: {' '.join(str(err).split())}\n")
    else:
        result = data_run(
            run, quick=a.quick, device=a.device, root=a.root, preset=a.preset, presets=PRESETS,
            assignments=a.assignments,
        )  # fmt: skip
    report(result, markdown, a.json, name="editing", out=a.out, plot=plot)


if __name__ == "__main__":
    main()
