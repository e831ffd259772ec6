r"""One speed report: method overheads, GFF / EP step costs, throughput against batch size, the
cold start of a one-image edit and the slowdown beside a busy process.

Five parts, each measured, each with its table:

* **method overhead** — :func:`nidiff.bench.overhead.run`: every editing and inversion method's
  wall time over the time spent inside its network calls (goal ≤ 1.05);
* **GFF / EP vs isotropic** — :func:`nidiff.bench.training.run`: a GFF and an edge-preserving
  training and sampling step over the isotropic one, same network and batch (goal ≤ 1.03);
* **throughput** — :func:`throughput`: images per second of one *sampling step* of each bundled
  model (network call + reverse transition: DDIM η = 0 with :math:`\hat x_0` clipped for
  isotropic and GFF, the EP posterior with its noise for edge, at ``t = 300 → 280`` of 1000;
  :mod:`nidiff.bench.training`'s sampling step) and of one *training step* (per-element loss of
  the model's process, backward, gradient clipping, AdamW step; the training benchmark's step) at
  each batch size ``B``: ``B`` ÷ the median wall time of ``reps`` steps after ``warmup`` untimed
  ones, on one fixed batch of smooth random images, device-synchronised around each step on CUDA;
* **cold start** — :func:`nidiff.bench._startup.cold_start`: ``nidiff edit … --method sdedit
  --steps 5`` as a new process, split into python start-up, torch import, other imports, loading
  and network (goal: wall ≤ 2 × (python + torch import + network));
* **contention** — :func:`nidiff.bench._startup.contention`: a forward pass of the bundled model
  alone and beside one busy process, under PyTorch's defaults, nidiff's thread policy
  (:mod:`nidiff._threads`) and one thread (goal for the policy: busy ÷ idle ≤ 1.5).

Each ratio row is printed with PASS (ratio ≤ goal) or FAIL: a verdict on the measured median
ratio of this run, not a test. Presets: ``quick`` (the overhead and training quick presets;
throughput at B = 1, 4, 16, 64, 1 warm-up and 5 timed steps, training step of the default model
only; cold start median of 3 rounds, contention 20 timed passes each side in 4 blocks; measured: 5.5
minutes wall on one CPU thread of a shared, loaded machine, 2.5 minutes of it on the CPU, before
the last two parts, which add about a minute) and ``full`` (their full presets; B = 1, 4, …,
1024, 3 warm-ups and 20 timed steps, every model's training step; cold start 5 rounds,
contention 50 passes; for a GPU).

    python -m nidiff.bench.speed --quick --out bench-speed                # CPU
    python -m nidiff.bench.speed --device cuda --out bench-speed          # full
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nidiff.bundled import DEFAULT_MODEL, MODELS, load_bundled

from . import _startup, overhead, training
from ._device import hardware, timed
from ._report import data_run, main_parser, pyplot, report, save_figure

__all__ = ["PRESETS", "Preset", "markdown", "plot", "run", "throughput", "verdict"]

SHORT = {"fashion-isotropic": "isotropic", "fashion-gff": "GFF", "fashion-edge": "edge"}
PARTS = ("overhead", "training", "throughput", "cold_start", "contention")


@dataclass(frozen=True)
class Preset:
    """Throughput setting (batch sizes, untimed and timed steps per size, models trained), the
    cold start's rounds, the contention case's timed forward passes, and which of
    :data:`PARTS` to run (e.g. ``--set parts=cold_start,contention``)."""

    batches: tuple[int, ...]
    warmup: int
    reps: int
    train_models: tuple[str, ...]
    cold_repeats: int = 3
    contention_reps: int = 20
    parts: tuple[str, ...] = PARTS


PRESETS = {
    "quick": Preset(batches=(1, 4, 16, 64), warmup=1, reps=5, train_models=(DEFAULT_MODEL,)),
    "full": Preset(
        batches=(1, 4, 16, 64, 256, 1024),
        warmup=3,
        reps=20,
        train_models=MODELS,
        cold_repeats=5,
        contention_reps=50,
    ),
}


def _median_seconds(step: Callable[[Any], Any], batch: Any, warmup: int, reps: int, dev) -> float:
    """Median wall time of ``reps`` calls ``step(batch)`` after ``warmup`` untimed ones."""
    times = []
    for i in range(warmup + reps):
        _, seconds = timed(dev, step, batch)
        if i >= warmup:
            times.append(seconds)
    return statistics.median(times)


def throughput(
    models: tuple[str, ...] = MODELS,
    batches: tuple[int, ...] = PRESETS["quick"].batches,
    *,
    train_models: tuple[str, ...] = (DEFAULT_MODEL,),
    warmup: int = 1,
    reps: int = 5,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Images per second of a sampling step of each of ``models`` and a training step of each of
    ``train_models`` (bundled model names) at every batch size in ``batches``.

    Returns a JSON-safe dict: ``batches``, ``warmup``, ``reps`` and ``series``, one per (model,
    step) with ``model``, ``step`` (``sample`` / ``train``), ``ms`` (median milliseconds per
    step, one per batch size) and ``images_per_s`` (batch ÷ median time).

    Raises:
        ValueError: an unknown model, a batch size < 1, ``warmup`` < 0 or ``reps`` < 1.
    """
    unknown = [m for m in (*models, *train_models) if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown bundled model {unknown[0]!r}; choose from {list(MODELS)}")
    if not batches or min(batches) < 1 or warmup < 0 or reps < 1:
        raise ValueError(f"batches={batches} must be >= 1, warmup={warmup} >= 0, reps={reps} >= 1")
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    series: list[dict[str, Any]] = []
    for name in dict.fromkeys((*models, *train_models)):
        m = load_bundled(name, dev)  # a fresh copy: the training step changes its weights
        size = int(m.config["model"]["sample_size"])
        draws = {b: training._draw(gen, training.Preset(b, size, 0, 0), dev) for b in batches}
        steps: list[tuple[str, Callable[[Any], Any]]] = []
        if name in models:
            steps.append(("sample", training._sampling_step(m.spec, m.denoiser)))
        if name in train_models:
            net = m.network.train().requires_grad_(True)
            steps.append(("train", training._training_step(m.spec, net)))
        for what, step in steps:  # sample first: training changes the weights
            ms = [1e3 * _median_seconds(step, draws[b], warmup, reps, dev) for b in batches]
            series.append(
                {
                    "model": name,
                    "step": what,
                    "ms": ms,
                    "images_per_s": [1e3 * b / t for b, t in zip(batches, ms, strict=True)],
                }
            )
    return {"batches": list(batches), "warmup": warmup, "reps": reps, "series": series}


def run(quick: bool = True, device: str = "cpu", *, preset: Preset | None = None) -> dict[str, Any]:
    """The preset's parts (all five by default) with the ``quick`` or ``full`` preset; returns a
    JSON-safe dict. ``preset`` replaces the sizes of the last three parts and the choice of parts
    (the first two parts' sizes follow ``quick``).

    Keys: ``overhead`` (:func:`nidiff.bench.overhead.run`), ``training``
    (:func:`nidiff.bench.training.run`), ``throughput`` (:func:`throughput`), ``cold_start``
    and ``contention`` (:mod:`nidiff.bench._startup`; contention always on the CPU),
    ``seconds`` (wall time per part and ``total``) and the setting (``preset``, ``device``,
    ``hardware``, ``torch``, ``threads``); a part not run has no key.

    Raises:
        ValueError: a part not in :data:`PARTS`.
    """
    name = "custom" if preset is not None else ("quick" if quick else "full")
    p = preset if preset is not None else PRESETS[name]
    unknown = [k for k in p.parts if k not in PARTS]
    if unknown or not p.parts:
        raise ValueError(f"parts={p.parts} must be some of {PARTS}")
    dev = torch.device(device)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "overhead": lambda: overhead.run(quick=quick, device=device),
        "training": lambda: training.run(quick=quick, device=device),
        "throughput": lambda: throughput(
            MODELS,
            p.batches,
            train_models=p.train_models,
            warmup=p.warmup,
            reps=p.reps,
            device=device,
        ),
        "cold_start": lambda: _startup.cold_start(p.cold_repeats, device=str(dev)),
        "contention": lambda: _startup.contention(
            reps=p.contention_reps, rounds=min(4, p.contention_reps)
        ),
    }
    result: dict[str, Any] = {}
    for key, part in parts.items():
        if key not in p.parts:
            continue
        t0 = time.perf_counter()
        result[key] = part()
        seconds[key] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - start
    return {
        "preset": name,
        "device": str(dev),
        "hardware": hardware(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        **result,
        "seconds": seconds,
    }


def verdict(ratio: float, goal: float) -> str:
    """``PASS`` when the measured ``ratio`` is at most ``goal``, ``FAIL`` above it, ``n/a`` when
    it was not measured (NaN: a method without network calls)."""
    if not math.isfinite(ratio):
        return "n/a"
    return "PASS" if ratio <= goal else "FAIL"


def _overhead_table(res: dict[str, Any]) -> list[str]:
    cfg, goal = res["config"], res["goal"]
    lines = [
        f"**Method overhead** (wall time ÷ time inside the network; goal ≤ {goal}): bundled "
        f"{cfg['model']}, {cfg['steps']} steps, B = {cfg['batch']}.",
        "",
        "| method | NFE | overhead | vs isolated calls | goal | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['method']} | {r['nfe']} | {r['overhead']:.4f} "
            f"| {r['overhead_vs_isolated']:.4f} | ≤ {goal} | {verdict(r['overhead'], goal)} |"
        )
    return lines


def _training_table(res: dict[str, Any]) -> list[str]:
    goal = res["goal"]
    lines = [
        f"**GFF / EP vs isotropic** (step time ÷ isotropic step time, median of per-round ratios; "
        f"goal ≤ {goal}): batch {res['batch']} at {res['size']}×{res['size']}, "
        f"{res['rounds']} rounds.",
        "",
        "| process | step | ratio | ratio of fastest | from parts | goal | verdict |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for kind, ratios in res["ratio"].items():
        for what, r in ratios.items():
            lo = res["ratio_of_minima"][kind][what]
            parts = res["ratio_from_parts"][kind][what]
            lines.append(
                f"| {kind} | {what} | {r:.4f} | {lo:.4f} | {parts:.4f} | ≤ {goal} "
                f"| {verdict(r, goal)} |"
            )
    return lines


def _throughput_table(res: dict[str, Any]) -> list[str]:
    batches = res["batches"]
    lines = [
        f"**Throughput** (images/s = B ÷ median step time of {res['reps']} steps after "
        f"{res['warmup']} warm-up).",
        "",
        "| model | step | " + " | ".join(f"B = {b}" for b in batches) + " |",
        "|---|---|" + "---:|" * len(batches),
    ]
    for s in res["series"]:
        cells = " | ".join(f"{v:.1f}" for v in s["images_per_s"])
        lines.append(f"| {SHORT.get(s['model'], s['model'])} | {s['step']} | {cells} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The parts that ran as markdown tables, each ratio row with its PASS / FAIL verdict."""
    sec = result["seconds"]
    verdicts: list[str] = []
    tables: list[list[str]] = []
    if "overhead" in result:
        res = result["overhead"]
        verdicts += [verdict(r["overhead"], res["goal"]) for r in res["rows"]]
        tables.append(_overhead_table(res))
    if "training" in result:
        res = result["training"]
        verdicts += [verdict(r, res["goal"]) for ratios in res["ratio"].values()
                     for r in ratios.values()]  # fmt: skip
        tables.append(_training_table(res))
    if "throughput" in result:
        tables.append(_throughput_table(result["throughput"]))
    if "cold_start" in result:
        res = result["cold_start"]
        verdicts.append(verdict(res["ratio"], res["goal"]))
        tables.append(_startup.cold_start_table(res, verdict))
    if "contention" in result:
        res = result["contention"]
        verdicts += [verdict(r["ratio"], res["goal"]) for r in res["rows"]
                     if r["case"] == "nidiff policy"]  # fmt: skip
        tables.append(_startup.contention_table(res, verdict))
    timing = ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in sec.items() if k != "total")
    lines = [
        f"Speed, {result['preset']} preset, {result['hardware']}, {result['threads']} threads, "
        f"torch {result['torch']}; {sec['total']:.0f} s ({timing}).",
    ]
    for table in tables:
        lines += ["", *table]
    lines += [
        "",
        f"Verdicts (measured ratio ≤ goal): {verdicts.count('PASS')} PASS, "
        f"{verdicts.count('FAIL')} FAIL of {len(verdicts)}.",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    """``speed-throughput.png`` (images/s against batch size, log-log: solid sampling steps,
    dashed training steps), ``speed-overhead.png`` (:func:`nidiff.bench.overhead.plot`) and
    ``speed-training.png`` (:func:`nidiff.bench.training.plot`) in ``directory``, for the parts
    that ran (the cold start and contention parts are tables only)."""
    paths = [_throughput_plot(result, directory)] if "throughput" in result else []
    if "overhead" in result:
        paths += overhead.plot(result["overhead"], directory, name="speed-overhead")
    if "training" in result:
        paths += training.plot(result["training"], directory, name="speed-training")
    return paths


def _throughput_plot(result: dict[str, Any], directory: Path) -> Path:
    plt = pyplot()
    res = result["throughput"]
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(s["model"] for s in res["series"]))}
    for s in res["series"]:
        ax.plot(
            res["batches"],
            s["images_per_s"],
            "o-" if s["step"] == "sample" else "s--",
            color=colours[s["model"]],
            label=f"{SHORT.get(s['model'], s['model'])}, {s['step']} step",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(res["batches"], [str(b) for b in res["batches"]])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("batch size B")
    ax.set_ylabel("images / s")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title(
        f"{result['preset']} preset, {result['hardware']}, {result['threads']} threads", fontsize=9
    )
    return save_figure(fig, directory / "speed-throughput.png")


def main(argv: list[str] | None = None) -> None:
    ap = main_parser(
        "Method overheads, GFF/EP step cost vs isotropic, throughput vs batch size.",
        presets=PRESETS,
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="quick overhead/training presets; throughput at B = 1, 4, 16, 64, 5 timed steps "
        "(default: full presets, B = 1 … 1024, 20 timed steps; for a GPU)",
    )
    a = ap.parse_args(argv)
    result = data_run(
        run, quick=a.quick, device=a.device, preset=a.preset, presets=PRESETS,
        assignments=a.assignments,
    )  # fmt: skip
    report(result, markdown, a.json, name="speed", out=a.out, plot=plot)


if __name__ == "__main__":
    main()
