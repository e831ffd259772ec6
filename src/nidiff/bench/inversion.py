r"""Edit-friendly (EF) inversion: its noise maps, reconstructions and shifts (EF Fig. 5, 6, 11).

Three experiments; each one reports a markdown table:

1. **Noise-map statistics** (EF Fig. 5 set-up): data :math:`\mathcal N((10, 10), I)` in 2-D
   with its exact denoiser (:class:`~nidiff.models.GaussianDenoiser`), DDPM (:math:`\eta = 1`)
   on the 40-step leading grid of the linear 1000-step schedule. For ``B`` data points (or ``B``
   native samples) the per-step variance of the white maps and the angle between consecutive
   maps of one sample are measured for EF maps (:func:`~nidiff.inversion.edit_friendly_invert`),
   CycleDiffusion maps (:func:`~nidiff.inversion.cycle_invert`) and the noise native DDPM
   sampling draws. Native noise has variance 1 and angles uniform on ``[0°, 180°]`` (mean 90°);
   EF maps have variance > 1 and mean angle > 90° (consecutive maps point against each other).
   Only the 39 stochastic steps count: the last step (``t = 1 → 0``) is deterministic in nidiff
   and its map follows the inversion module's ``σ² = β`` convention.
2. **Reconstruction**: relative error :math:`\lVert\hat x_0 - x_0\rVert_2 / \lVert x_0\rVert_2`
   (float32, per image; mean and max) of regenerating the bundled example images with the
   bundled Fashion model (``fashion-isotropic``, class-conditional on each image's class, no
   guidance) from EF maps (last map kept: exact), EF with ``zero_last=True`` (the authors'
   convention: off by :math:`x_0 - \hat x_0` at the last step) and CycleDiffusion maps.
3. **Shift** (EF Fig. 11): every EF map and :math:`x_T` cyclically shifted by ``d`` pixels to
   the right (:func:`~nidiff.inversion.shift_maps` with ``fill="wrap"``) and regenerated; the MSE
   to the shifted source ``torch.roll(x0, d, -1)`` is compared with the same for *native* noise:
   a DDPM sample drawn from fresh :math:`x_T` and noise, redrawn from the shifted
   :math:`x_T` and noise, compared with the shifted first sample. The ratio EF / native below 1
   means EF's maps carry the image's structure (the regenerated image follows the shift) better
   than native noise does.

Presets: quick (``B = 200``, 20 Fashion steps, about a minute on two CPU cores) and full
(``B = 1000``, 100 steps); both shift by ``d ∈ {1, 2, 4, 8, 16}`` pixels.

    python -m nidiff.bench.inversion --quick --json bench-inversion.json
    python -m nidiff.bench.inversion --device cuda
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nidiff.bundled import ASSETS, load_bundled
from nidiff.data.folder import load_image
from nidiff.inversion import (
    cycle_invert,
    edit_friendly_invert,
    edit_friendly_regenerate,
    shift_maps,
)
from nidiff.models import GaussianDenoiser
from nidiff.process import Process
from nidiff.samplers import sample
from nidiff.schedule import DiscreteSchedule, leading_grid, linspace_grid

from ._device import hardware
from ._report import data_run, main_parser, pyplot, report, save_figure

__all__ = ["PRESETS", "Preset", "main", "markdown", "noise_statistics", "plot", "run"]

METHODS = ("edit-friendly", "cycle", "native")
MEAN = (10.0, 10.0)  # EF Fig. 5 data: N((10, 10), I)
STAT_STEPS = 40
OBTUSE_TOP = 162.0  # degrees: the 10 % of [0°, 180°] nearest 180°


@dataclass(frozen=True)
class Preset:
    """Sizes of the three experiments."""

    batch: int  # data points / samples of the noise-map statistics
    steps: int  # Fashion grid size (reconstruction and shift)
    shifts: tuple[int, ...]  # pixels


PRESETS = {
    "quick": Preset(batch=200, steps=20, shifts=(1, 2, 4, 8, 16)),
    "full": Preset(batch=1000, steps=100, shifts=(1, 2, 4, 8, 16)),
}


# --------------------------------------------------------------------------- 1. statistics
def angles(zs: list[Tensor]) -> Tensor:
    """Angles (degrees) between consecutive maps of each sample, ``(N - 1, B)``."""
    z = torch.stack(zs).double().flatten(2)
    cos = (z[:-1] * z[1:]).sum(-1) / (z[:-1].norm(dim=-1) * z[1:].norm(dim=-1))
    return torch.rad2deg(torch.acos(cos.clamp(-1, 1)))


def _summary(zs: list[Tensor]) -> dict[str, Any]:
    z = torch.stack(zs).double()
    per_step = z.var(dim=tuple(range(1, z.ndim)))
    a = angles(zs)
    return {
        "variance": z.var().item(),
        "variance_per_step": per_step.tolist(),
        "mean_angle": a.mean().item(),
        "angle_se": a.std().item() / math.sqrt(a.numel()),
        "angle_per_step": a.mean(dim=1).tolist(),
        "obtuse": (a > 90).double().mean().item(),
        "above_162": (a > OBTUSE_TOP).double().mean().item(),
    }


@torch.no_grad()
def noise_statistics(
    batch: int = 1000, steps: int = STAT_STEPS, seed: int = 0, device: str = "cpu"
) -> dict[str, Any]:
    """Experiment 1 (EF Fig. 5 set-up) with ``batch`` points and a ``steps``-step leading grid.

    Returns per method (``edit-friendly``, ``cycle``, ``native``): overall ``variance``, the
    ``variance_per_step`` and ``angle_per_step`` (mean angle between map ``i`` and ``i + 1``),
    ``mean_angle`` (degrees) with its standard error ``angle_se``, and the fractions ``obtuse``
    (> 90°) and ``above_162``; plus the ``times`` of the stochastic steps and the setting.
    """
    dev = torch.device(device)
    sched = DiscreteSchedule.linear(1000)
    grid = leading_grid(sched, steps)
    model = GaussianDenoiser(torch.tensor(MEAN), torch.eye(2), sched)
    process = Process(sched)
    g = torch.Generator().manual_seed(seed)
    x0 = (torch.tensor(MEAN) + torch.randn(batch, 2, generator=g)).to(dev)
    ef = edit_friendly_invert(model, x0, process, grid, generator=g).zs[:-1]
    cyc = cycle_invert(model, x0, process, grid, generator=g).zs[:-1]
    x_T = process.prior(torch.randn(batch, 2, generator=g)).to(dev)
    native = sample(model, x_T, grid, process.rule(1.0), noise=g).zs[:-1]
    if any(z is None for z in native):
        raise RuntimeError("a native step before the last one drew no noise")
    maps = {"edit-friendly": ef, "cycle": cyc, "native": native}
    return {
        "batch": batch,
        "steps": steps,
        "times": [float(t) for t in grid.t[:-1]],
        "methods": {k: _summary(v) for k, v in maps.items()},  # type: ignore[arg-type]
    }


# --------------------------------------------------------------------------- 2. and 3.
def _examples(class_names: list[str]) -> tuple[list[str], Tensor, Tensor]:
    """The bundled example images ``(B, 1, 28, 28)`` and their labels (from the file names)."""
    index = {n.lower().replace("/", " ").replace("-", " "): i for i, n in enumerate(class_names)}
    files = sorted((ASSETS / "examples").glob("*.png"))
    labels = []
    for f in files:
        name = f.stem.rsplit("-", 1)[0].replace("-", " ")
        matches = [i for n, i in index.items() if n == name or n.startswith(name + " ")]
        if len(matches) != 1:
            raise RuntimeError(f"cannot tell the class of example {f.name}")
        labels.append(matches[0])
    x0 = torch.stack([load_image(f, size=28) for f in files])
    return [f.name for f in files], x0, torch.tensor(labels)


def _relative_error(x: Tensor, x0: Tensor) -> Tensor:
    return (x - x0).flatten(1).norm(dim=1) / x0.flatten(1).norm(dim=1)


@torch.no_grad()
def fashion_experiments(
    steps: int, shifts: tuple[int, ...], device: str = "cpu", seed: int = 0
) -> dict[str, Any]:
    """Experiments 2 (reconstruction) and 3 (shift) on the bundled Fashion model."""
    dev = torch.device(device)
    loaded = load_bundled(device=dev)
    net, process = loaded.denoiser, loaded.process
    names, x0, labels = _examples(loaded.class_names)
    x0, labels = x0.to(dev), labels.to(dev)
    grid = linspace_grid(process.schedule, steps)

    def gen(k: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed + k)

    recon: dict[str, dict[str, Any]] = {}
    ef = edit_friendly_invert(net, x0, process, grid, cond=labels, generator=gen(1))
    invs = {
        "edit-friendly": ef,
        "edit-friendly, zero_last": edit_friendly_invert(
            net, x0, process, grid, cond=labels, generator=gen(1), zero_last=True
        ),
        "cycle": cycle_invert(net, x0, process, grid, cond=labels, generator=gen(2)),
    }
    for key, inv in invs.items():
        out = edit_friendly_regenerate(net, inv, process).x0
        err = _relative_error(out.float(), x0.float())
        recon[key] = {"mean": err.mean().item(), "max": err.max().item(), "per_image": err.tolist()}

    # Native: one DDPM sample, then the same draw with x_T and every noise map shifted.
    rule = process.rule(1.0)
    x_T = process.prior(torch.randn(x0.shape, generator=gen(3)).to(dev))
    base = sample(net, x_T, grid, rule, cond=labels, noise=gen(4))
    shift: dict[str, dict[str, float]] = {}
    for d in shifts:
        maps = shift_maps([ef.x_T, *ef.zs], dx=d, fill="wrap")
        out = edit_friendly_regenerate(net, ef, process, x_T=maps[0], zs=maps[1:]).x0
        mse_ef = (out - x0.roll(d, dims=-1)).square().mean().item()
        zs = [None if z is None else shift_maps([z], dx=d)[0] for z in base.zs]
        nat = sample(net, x_T.roll(d, dims=-1), grid, rule, cond=labels, noise=zs).x0
        mse_nat = (nat - base.x0.roll(d, dims=-1)).square().mean().item()
        shift[str(d)] = {
            "mse_ef": mse_ef,
            "mse_native": mse_nat,
            "ratio": mse_ef / mse_nat if mse_nat > 0 else math.inf,
        }
    return {"steps": steps, "images": names, "reconstruction": recon, "shift": shift}


# --------------------------------------------------------------------------- run / table
def run(quick: bool = True, device: str = "cpu", *, preset: Preset | None = None) -> dict[str, Any]:
    """All three experiments with the ``quick`` or ``full`` preset (or ``preset``).

    Returns a JSON-safe dict: ``statistics`` (:func:`noise_statistics`), ``reconstruction``
    and ``shift`` (per ``d``: ``mse_ef``, ``mse_native``, ``ratio``), ``seconds`` per part and
    the setting (``preset``, ``device``, ``hardware``, ``torch``, ``threads``, ``steps``,
    ``images``).
    """
    name = "quick" if quick else "full"
    p = PRESETS[name] if preset is None else preset
    dev = torch.device(device)
    start = time.perf_counter()
    stats = noise_statistics(p.batch, STAT_STEPS, device=device)
    mid = time.perf_counter()
    fashion = fashion_experiments(p.steps, p.shifts, device=device)
    end = time.perf_counter()
    return {
        "preset": name if preset is None else "custom",
        "device": str(dev),
        "hardware": hardware(dev),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "statistics": stats,
        **fashion,
        "seconds": {"statistics": mid - start, "fashion": end - mid, "total": end - start},
    }


def statistics_table(stats: dict[str, Any]) -> str:
    """Experiment 1 as markdown: one row per method, then the per-step variance at a few times."""
    n = len(stats["times"])
    lines = [
        f"Noise maps, EF Fig. 5 set-up: N((10, 10), I) in 2-D, exact denoiser, DDPM on "
        f"{stats['steps']} leading steps, B = {stats['batch']}; the {n} stochastic steps.",
        "",
        "| maps | variance | per step (min / median / max) | mean angle (°) | obtuse "
        f"| > {OBTUSE_TOP:.0f}° |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k, m in stats["methods"].items():
        v = torch.tensor(m["variance_per_step"])
        lines.append(
            f"| {k} | {m['variance']:.2f} | {v.min():.2f} / {v.median():.2f} / {v.max():.2f} "
            f"| {m['mean_angle']:.1f} ± {m['angle_se']:.1f} | {m['obtuse']:.0%} "
            f"| {m['above_162']:.0%} |"
        )
    picks = sorted({round(i * (n - 1) / 4) for i in range(5)}) if n > 1 else [0]
    head = " | ".join(f"t = {stats['times'][i]:.0f}" for i in picks)
    lines += ["", f"| variance at | {head} |", "|---|" + "---:|" * len(picks)]
    for k, m in stats["methods"].items():
        cells = " | ".join(f"{m['variance_per_step'][i]:.2f}" for i in picks)
        lines.append(f"| {k} | {cells} |")
    lines.append("")
    lines.append(
        "Native noise: variance 1, mean angle 90° (uniform angles: 50% obtuse, 10% > 162°)."
    )
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """The result as markdown: noise-map statistics, reconstruction errors, shift MSEs."""
    lines = [
        f"Edit-friendly inversion, {result['preset']} preset, {result['hardware']}, "
        f"{result['threads']} threads, {result['seconds']['total']:.0f} s.",
        "",
        statistics_table(result["statistics"]),
        "",
        f"Reconstruction of the {len(result['images'])} bundled examples, fashion-isotropic, "
        f"{result['steps']} steps, float32: relative L2 error ‖x̂0 − x0‖ / ‖x0‖.",
        "",
        "| maps | mean | max |",
        "|---|---:|---:|",
    ]
    for k, r in result["reconstruction"].items():
        lines.append(f"| {k} | {r['mean']:.2e} | {r['max']:.2e} |")
    lines += [
        "",
        "Shift (EF Fig. 11): x_T and every map rolled by d pixels (fill wrap), regenerated; MSE "
        "to the rolled source (EF) or to the rolled unshifted sample (native DDPM noise).",
        "",
        "| d (px) | MSE EF | MSE native | EF / native |",
        "|---:|---:|---:|---:|",
    ]
    for d, s in result["shift"].items():
        lines.append(f"| {d} | {s['mse_ef']:.4f} | {s['mse_native']:.4f} | {s['ratio']:.3f} |")
    return "\n".join(lines)


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    """``directory/inversion.png``, four panels: per-step variance (log scale) and mean angle
    between consecutive maps against the time t (EF, cycle and native maps; native: 1 and 90°), the
    reconstruction error of each kind of map (mean and max, log scale), and the shift MSE against
    the shift in pixels for EF maps and native noise."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    (ax_var, ax_ang), (ax_rec, ax_shift) = axes
    stats = result["statistics"]
    times = stats["times"]
    mids = [(a + b) / 2 for a, b in itertools.pairwise(times)]
    for k, m in stats["methods"].items():
        ax_var.plot(times, m["variance_per_step"], ".-", ms=3, label=k)
        ax_ang.plot(mids, m["angle_per_step"], ".-", ms=3, label=k)
    ax_var.axhline(1.0, color="gray", ls=":", lw=1)
    ax_ang.axhline(90.0, color="gray", ls=":", lw=1)
    ax_var.set_yscale("log")
    ax_var.set(xlabel="t", ylabel="variance of the white map", title="noise-map variance")
    ax_ang.set(xlabel="t (between consecutive maps)", ylabel="mean angle (°)")
    ax_ang.set_title("angle between consecutive maps")
    ax_var.legend(fontsize=7)

    recon = result["reconstruction"]
    xs = range(len(recon))
    for j, stat in enumerate(("mean", "max")):
        ys = [r[stat] for r in recon.values()]
        ax_rec.bar([x + (j - 0.5) * 0.38 for x in xs], ys, 0.38, label=stat)
    ax_rec.set_yscale("log")
    ax_rec.set_xticks(list(xs), [k.replace(", ", ",\n") for k in recon], fontsize=7)
    ax_rec.set(ylabel="‖x̂0 − x0‖ / ‖x0‖", title=f"reconstruction, {result['steps']} steps")
    ax_rec.legend(fontsize=7)

    shifts = sorted(result["shift"], key=int)
    d = [int(s) for s in shifts]
    ax_shift.plot(d, [result["shift"][s]["mse_ef"] for s in shifts], "o-", label="EF maps")
    ax_shift.plot(d, [result["shift"][s]["mse_native"] for s in shifts], "s--", label="native")
    ax_shift.set_xticks(d)
    ax_shift.set(xlabel="shift d (px)", ylabel="MSE to the shifted reference", title="shift")
    ax_shift.legend(fontsize=7)
    fig.suptitle(
        f"Edit-friendly inversion, {result['preset']} preset, {result['hardware']}", fontsize=9
    )
    fig.tight_layout()
    return [save_figure(fig, directory / "inversion.png")]


def main(argv: list[str] | None = None) -> None:
    ap = main_parser(
        "Edit-friendly inversion: noise-map statistics, reconstruction, shifts.", presets=PRESETS
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="B = 200, 20 steps (the default)")
    mode.add_argument("--full", action="store_true", help="B = 1000, 100 steps")
    a = ap.parse_args(argv)
    result = data_run(
        run, quick=not a.full, device=a.device, preset=a.preset, presets=PRESETS,
        assignments=a.assignments,
    )  # fmt: skip
    report(result, markdown, a.json, name="inversion", out=a.out, plot=plot)


if __name__ == "__main__":
    main()
