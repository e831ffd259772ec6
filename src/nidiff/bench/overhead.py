r"""Framework overhead of every editing and inversion method over its network calls.

For each method, on the bundled default model and a bundled example image, the network is wrapped
in a counter that records every call, its batch size and the wall time spent inside it (under
``torch.no_grad``; device-synchronised on CUDA). Two ratios are reported:

* **overhead** = the method's wall time ÷ the time spent inside the network during that run;
* **overhead vs isolated** = the wall time ÷ :math:`\sum_{calls} t_1(b)`, with :math:`t_1(b)` the
  fastest of several bare network calls at the same batch size :math:`b` measured apart (guided
  calls run at batch :math:`2B`, the weighting map at :math:`2nB`: each is compared with calls of
  its own size). It also charges the method for calls slowed by other load or by cold caches, so
  on a shared machine the first ratio is the reliable one.

The goal is an overhead of at most 1.05. "Inside the network" is the model contract's call
``model(x_t, t, cond)``, so it includes the thin adapter (time reshaping, label embedding) as well
as the UNet. The second table counts, without running anything, the network evaluations per edit
with the papers' settings (NGDM Sec. 4.1, EF Sec. 6, DiffEdit Sec. 4; assumptions are listed in
its notes column).

Run ``python -m nidiff.bench.overhead --quick`` (a few minutes on two CPU cores).
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import nidiff
from nidiff.bundled import ASSETS, load_bundled
from nidiff.data.folder import load_image
from nidiff.editing import diffedit, ilvr, ngdm, ngdm_edit_friendly, sdedit, weighting_map
from nidiff.editing.sdedit import start_index
from nidiff.editing.strokes import stroke_edit
from nidiff.inversion import (
    cycle_edit,
    cycle_invert,
    ddim_edit,
    ddim_invert,
    edit_friendly_invert,
    edit_friendly_regenerate,
)
from nidiff.methods import EF_PAPER, STROKES_EP
from nidiff.methods import METHODS as REGISTRY
from nidiff.schedule import DiscreteSchedule, linspace_grid

from ._device import timed
from ._report import main_parser, pyplot, report, save_figure

__all__ = ["CountingModel", "format_tables", "main", "paper_nfe", "plot", "run"]

IMAGE = "shirt-0.png"  # source: class 6 (Shirt)
SOURCE, TARGET = 6, 0  # Shirt -> T-shirt/top
GUIDANCE = 3.0  # target guidance of the edits (batch 2B calls); inversions and maps are unguided
MAP_DRAWS = 10  # NGDM / DiffEdit: 10 noise draws, source and target predictions each
SKIP_FRACTION = EF_PAPER["skip_frac"]  # EF: T_skip = 36 of 100 steps
GOAL = 1.05


class CountingModel:
    """A model wrapper that counts calls per batch size and the time spent inside them."""

    def __init__(self, model: Callable[..., Tensor], device: torch.device):
        self.model, self.device = model, device
        self.batches: Counter[int] = Counter()
        self.seconds = 0.0

    @property
    def calls(self) -> int:
        return sum(self.batches.values())

    def __call__(self, x_t: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        out, seconds = timed(self.device, self.model, x_t, t, cond)
        self.seconds += seconds
        self.batches[int(x_t.shape[0])] += 1
        return out


def _call_time(model, x: Tensor, cond: Tensor, reps: int, device: torch.device) -> float:
    """Wall time of one bare network call at ``x``'s batch size: the fastest of ``reps`` calls
    after two warm-ups (the uncontended cost; other load on a shared machine only slows calls)."""
    t = torch.tensor(500.0, device=device)
    times = []
    for i in range(reps + 2):
        _, seconds = timed(device, model, x, t, cond)
        if i >= 2:
            times.append(seconds)
    return min(times)


def paper_nfe() -> list[dict[str, Any]]:
    """Network evaluations per edit with the papers' settings (counted, nothing is run).

    A guided evaluation counts once (one batched call of ``2B``); the weighting map counts its
    ``2 n`` predictions (one batched call of ``2 n B`` in nidiff).
    """
    T = 1000
    sched = DiscreteSchedule.linear(T)
    map_evals = 2 * MAP_DRAWS
    skip = round(SKIP_FRACTION * 100)
    sdedit_steps = T - start_index(linspace_grid(sched, T), 0.5, T)
    diffedit_steps = 50 - start_index(linspace_grid(sched, 50), 0.5, T)
    ef = 100 + (100 - skip)
    rows = [
        ("weighting map", map_evals, "n = 10 draws × (source, target); NGDM Sec. 3.4"),
        ("NGDM (pixel, AFHQ)", T + map_evals, "1000 DDPM steps + map (NGDM Sec. 4.1)"),
        ("NGDM (latent, SD)", 50 + map_evals, "50 DDIM steps + map (NGDM Sec. 4.1)"),
        ("EF invert", 100, "100 steps (EF Sec. 6, SD 1.4)"),
        ("EF regenerate", 100 - skip, "100 − T_skip = 36 steps"),
        ("EF edit (invert + regenerate)", ef, ""),
        ("NGDM-EF", 100 + 100 + map_evals, "assumed: EF's 100 steps, all regenerated, + map"),
        ("SDEdit (AFHQ)", sdedit_steps, "assumed: t0 = 0.5 T of 1000 DDPM steps (EGSDE protocol)"),
        ("ILVR (AFHQ)", T, "all 1000 DDPM steps from the prior"),
        ("DDIM inversion + edit", ef, "assumed: EF Table 1's 100 steps and T_skip = 36"),
        ("CycleDiffusion", ef, "assumed: EF Table 1's 100 steps and T_skip = 36"),
        (
            "DiffEdit",
            map_evals + 2 * diffedit_steps,
            "mask + 25 DDIM inversion + 25 decoding (50 steps, r = 0.5)",
        ),
    ]
    return [{"method": m, "nfe": n, "notes": s} for m, n, s in rows]


def _check_covers_registry(rows) -> None:
    """Every pixel-space method of the registry (:data:`nidiff.methods.METHODS`) has a row (a
    row's first word is the method's name; text-only methods need Stable Diffusion)."""
    firsts = {row.split()[0] for row in rows}
    missing = [n for n, info in REGISTRY.items() if not info.text_only and n not in firsts]
    if missing:
        raise ValueError(f"the overhead benchmark has no row for the methods {missing}")


def run(
    quick: bool = True,
    steps: int | None = None,
    batch: int = 1,
    device: str = "cpu",
    reps: int | None = None,
) -> dict[str, Any]:
    """Time every method on the bundled default model; return a JSON-safe dict.

    Args:
        quick: the small preset (20 steps, 5 timing repetitions) instead of 100 steps and 20.
        steps: grid size of every method (overrides the preset).
        batch: images per edit ``B`` (copies of the example image).
        device: ``"cpu"`` or a CUDA device.
        reps: repetitions of each isolated per-call timing (overrides the preset).

    Returns:
        ``{"rows": [...], "call_time": {batch: seconds}, "paper_nfe": [...], "config": {...}}``.
    """
    steps = (20 if quick else 100) if steps is None else int(steps)
    reps = (5 if quick else 20) if reps is None else int(reps)
    if steps < 4 or batch < 1 or reps < 1:
        raise ValueError(f"steps={steps} must be >= 4, batch={batch} and reps={reps} >= 1")
    dev = torch.device(device)
    loaded = load_bundled(device=dev)
    net, process = loaded.denoiser, loaded.process
    null = net.null_cond()
    x0 = load_image(ASSETS / "examples" / IMAGE, size=28).to(dev)[None].expand(batch, -1, -1, -1)
    x0 = x0.contiguous()
    src = torch.full((batch,), SOURCE, dtype=torch.long, device=dev)
    tgt = torch.full((batch,), TARGET, dtype=torch.long, device=dev)
    grid = linspace_grid(process.schedule, steps)
    skip = round(SKIP_FRACTION * steps)
    guide = {"guidance": GUIDANCE, "null_cond": null}
    counter = CountingModel(net, dev)

    def gen(seed: int) -> torch.Generator:
        return torch.Generator(device=dev).manual_seed(seed)

    state: dict[str, Any] = {}

    def wmap():
        state["map"] = weighting_map(
            counter, x0, process, source_cond=src, target_cond=tgt, n=MAP_DRAWS, generator=gen(0)
        )
        return state["map"]

    def ef_invert():
        state["ef"] = edit_friendly_invert(counter, x0, process, grid, cond=src, generator=gen(2))
        return state["ef"]

    def ddim_inv():
        state["ddim"] = ddim_invert(counter, x0, process, grid, cond=src)
        return state["ddim"]

    def cycle():
        inv = cycle_invert(counter, x0, process, grid, cond=src, generator=gen(5))
        return cycle_edit(counter, inv, process, cond=tgt, skip=skip, **guide)

    def lam() -> Tensor:  # the weighting-map row runs first
        return state["map"].lam

    def ngdm_row():
        return ngdm(counter, x0, process, grid, lam(), cond=tgt, generator=gen(1), **guide)

    def ef_regen():
        return edit_friendly_regenerate(counter, state["ef"], process, cond=tgt, skip=skip, **guide)

    def ngdm_ef():
        return ngdm_edit_friendly(counter, state["ef"], process, lam(), cond=tgt, **guide)

    def sdedit_row():
        return sdedit(counter, x0, process, grid, strength=0.5, cond=tgt, generator=gen(3), **guide)

    def strokes_row():  # the k-means painting (no network calls) counts as overhead
        return stroke_edit(counter, x0, process, grid, strength=STROKES_EP["strength"],
                           clusters=STROKES_EP["clusters"], blur=STROKES_EP["stroke_blur"],
                           cond=tgt, generator=gen(7), **guide)  # fmt: skip

    def ilvr_row():
        return ilvr(counter, x0, process, grid, cond=tgt, generator=gen(4), **guide)

    def ddim_edit_row():
        return ddim_edit(counter, state["ddim"], process, cond=tgt, skip=skip, **guide)

    def diffedit_row():
        kw = {"source_cond": src, "target_cond": tgt, "generator": gen(6)}
        return diffedit(counter, x0, process, grid, **kw, **guide)

    methods: list[tuple[str, Callable[[], Any]]] = [
        ("weighting map", wmap),
        ("ngdm", ngdm_row),
        ("ef invert", ef_invert),
        ("ef regenerate", ef_regen),
        ("ngdm-ef", ngdm_ef),
        ("sdedit", sdedit_row),
        ("strokes (k-means + sdedit)", strokes_row),
        ("ilvr", ilvr_row),
        ("ddim invert", ddim_inv),
        ("ddim edit", ddim_edit_row),
        ("cycle (invert + edit)", cycle),
        ("diffedit", diffedit_row),
    ]
    _check_covers_registry(name for name, _ in methods)

    rows = []
    with torch.no_grad():
        for b in (batch, 2 * batch, 2 * MAP_DRAWS * batch):  # warm-up: first calls are slow
            labels = torch.full((b,), TARGET, dtype=torch.long, device=dev)
            _call_time(net, torch.zeros(b, *x0.shape[1:], device=dev), labels, 1, dev)
        for name, fn in methods:
            counter.batches.clear()
            counter.seconds = 0.0
            res, wall = timed(dev, fn)
            rows.append(
                {
                    "method": name,
                    "nfe": counter.calls,
                    "reported_nfe": getattr(res, "nfe", None),
                    "batches": dict(counter.batches),
                    "wall_s": wall,
                    "network_s": counter.seconds,
                }
            )
        sizes = sorted({b for r in rows for b in r["batches"]})
        call_time = {}
        for b in sizes:
            labels = torch.full((b,), TARGET, dtype=torch.long, device=dev)
            x = torch.randn(b, *x0.shape[1:], generator=gen(9), device=dev)
            call_time[b] = _call_time(net, x, labels, reps, dev)
    for r in rows:
        isolated = sum(n * call_time[b] for b, n in r["batches"].items())
        r["isolated_network_s"] = isolated
        r["overhead"] = r["wall_s"] / r["network_s"] if r["network_s"] > 0 else float("nan")
        r["overhead_vs_isolated"] = r["wall_s"] / isolated if isolated > 0 else float("nan")
        r["batches"] = {str(k): v for k, v in sorted(r["batches"].items())}
    config = {
        "quick": quick,
        "steps": steps,
        "batch": batch,
        "device": str(dev),
        "reps": reps,
        "model": "fashion-isotropic",
        "image": IMAGE,
        "guidance": GUIDANCE,
        "skip": skip,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "nidiff": getattr(nidiff, "__version__", "unknown"),
    }
    return {
        "rows": rows,
        "call_time": {str(b): s for b, s in call_time.items()},
        "paper_nfe": paper_nfe(),
        "config": config,
        "goal": GOAL,
    }


def format_tables(result: dict[str, Any]) -> str:
    """The two markdown tables of a :func:`run` result."""
    cfg = result["config"]
    lines = [
        f"Overhead on {cfg['device']} ({cfg['threads']} threads), bundled {cfg['model']}, "
        f"{cfg['steps']} steps, B = {cfg['batch']}, target guidance {cfg['guidance']:g}, "
        f"skip {cfg['skip']}; goal: overhead ≤ {result['goal']}",
        "",
        "| method | NFE | calls × batch | wall s | network s | overhead | vs isolated calls |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        calls = ", ".join(f"{n}×{b}" for b, n in r["batches"].items())
        lines.append(
            f"| {r['method']} | {r['nfe']} | {calls} | {r['wall_s']:.3f} | {r['network_s']:.3f} "
            f"| {r['overhead']:.3f} | {r['overhead_vs_isolated']:.3f} |"
        )
    times = ", ".join(f"batch {b}: {1e3 * s:.2f} ms" for b, s in result["call_time"].items())
    lines += ["", f"Isolated network call (fastest of {cfg['reps']}): {times}", ""]
    lines += [
        "Network evaluations per edit with the papers' settings (counted, not run):",
        "",
        "| method | NFE | notes |",
        "|---|---:|---|",
    ]
    lines += [f"| {r['method']} | {r['nfe']} | {r['notes']} |" for r in result["paper_nfe"]]
    return "\n".join(lines)


def plot(result: dict[str, Any], directory: Path, *, name: str = "overhead") -> list[Path]:
    """``directory/NAME.png``: a horizontal bar chart of each method's overhead (wall time ÷
    time inside the network; bars from 1) and its overhead vs isolated network calls, with the
    goal as a dashed line."""
    plt = pyplot()
    rows = result["rows"]
    cfg = result["config"]
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.42 * len(rows)))
    height = 0.4
    series = (
        ("overhead", "overhead (÷ network time)"),
        ("overhead_vs_isolated", "vs isolated calls"),
    )
    for j, (key, label) in enumerate(series):
        ys = [i + (j - 0.5) * height for i in range(len(rows))]
        xs = [r[key] for r in rows]
        bars = ax.barh(ys, [x - 1 for x in xs], height, left=1.0, label=label)
        ax.bar_label(bars, labels=[f"{x:.3f}" for x in xs], fontsize=6, padding=2)
    ax.axvline(1.0, color="gray", lw=0.8)
    ax.axvline(result["goal"], color="red", ls="--", lw=1, label=f"goal ≤ {result['goal']}")
    ax.set_yticks(range(len(rows)), [r["method"] for r in rows])
    ax.invert_yaxis()  # first method on top, as in the table
    ax.set_xlabel("method wall time / network time")
    ax.set_title(
        f"{cfg['steps']} steps, B = {cfg['batch']}, {cfg['device']}, {cfg['threads']} threads",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return [save_figure(fig, directory / f"{name}.png")]


def main(argv: list[str] | None = None) -> None:
    parser = main_parser(
        "Framework overhead of each editing/inversion method over its network calls."
    )
    parser.add_argument("--quick", action="store_true", help="small preset (20 steps)")
    parser.add_argument("--steps", type=int, default=None, help="grid size (default: preset)")
    parser.add_argument("--batch", type=int, default=1, help="images per edit")
    parser.add_argument("--reps", type=int, default=None, help="isolated-call repetitions")
    args = parser.parse_args(argv)
    result = run(
        quick=args.quick, steps=args.steps, batch=args.batch, device=args.device, reps=args.reps
    )
    report(result, format_tables, args.json, name="overhead", out=args.out, plot=plot)


if __name__ == "__main__":
    main()
