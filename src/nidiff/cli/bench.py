"""``nidiff bench``: run one of nidiff's benchmarks (:mod:`nidiff.bench`) and print its table."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .common import (
    check_outputs,
    device_option,
    input_errors,
    overwrite_option,
    progress_bar,
    quiet_option,
    resolve_device,
)

__all__ = ["BENCHMARKS", "bench"]


@dataclass(frozen=True)
class Benchmark:
    """A benchmark module of :mod:`nidiff.bench`: its ``run`` and its table formatter."""

    module: str
    table: str  # name of the function turning a run() result into markdown
    about: str
    quick: str  # what --quick changes


BENCHMARKS: dict[str, Benchmark] = {
    "editing": Benchmark(
        "nidiff.bench.editing",
        "markdown",
        "fidelity vs editability of NGDM, EF, NGDM+EF and 5 baselines (NGDM / EF Table 1 analog)",
        "12 images per pair, 10 steps, s 0.3/0.5, ILVR N 4, 4 map draws, 1 repeat (full: 200 "
        "images, 100 steps, 7 strengths, 4 factors, 10 draws, 3 repeats)",
    ),
    "training": Benchmark(
        "nidiff.bench.training",
        "markdown",
        "cost of a GFF / edge-preserving training and sampling step vs isotropic",
        "batch 8, 9 rounds instead of batch 64, 50 rounds",
    ),
    "overhead": Benchmark(
        "nidiff.bench.overhead",
        "format_tables",
        "framework overhead of every editing and inversion method over its network calls",
        "20 steps, 5 repetitions instead of 100 and 20",
    ),
    "inversion": Benchmark(
        "nidiff.bench.inversion",
        "markdown",
        "edit-friendly noise-map statistics, reconstruction and shifts (EF Fig. 5, 6, 11)",
        "B 200, 20 steps instead of B 1000, 100 steps (shifts 1/2/4/8/16 px in both)",
    ),
    "generation": Benchmark(
        "nidiff.bench.generation",
        "markdown",
        "sample FID / precision / recall / accuracy of the bundled models by sampler and steps",
        "200 samples, 10 steps, ancestral only instead of 2,000, 1000…10 steps, DDIM, guided",
    ),
    "edge": Benchmark(
        "nidiff.bench.edge",
        "markdown",
        "edge-preserving vs isotropic: sample quality, FID per frequency band, stroke SDEdit",
        "200 samples at 10 steps, 100 stroke edits at 0.55·T and 0.4·T, 2,000 real images "
        "(full: 2,000 samples at 100/50/20/10 steps, 1,000 edits, 10,000 real images)",
    ),
    "sd-speed": Benchmark(
        "nidiff.bench.sd_speed",
        "markdown",
        "seconds per edit of NGDM, EF, diffusers' LEDITS++ and FlowEdit on random full-size SD "
        "1.x (default), SDXL, SD3 or FLUX architectures (--family)",
        "256², 8 steps, 1 timed edit, no warm-up (full: the family's size and steps, 1 warm-up "
        "+ 3 repeats)",
    ),
    "speed": Benchmark(
        "nidiff.bench.speed",
        "markdown",
        "method overheads, GFF/EP step cost vs isotropic, images/s vs batch size, cold start "
        "of a one-image edit, slowdown beside a busy process (PASS/FAIL)",
        "overhead and training quick presets; throughput at B 1/4/16/64, 5 timed steps, "
        "default model's training step only; cold start 3 rounds, contention 20 passes (full: "
        "B 1…1024, 20 steps, every model, 5 rounds, 50 passes)",
    ),
}

_HELP = "\n\n".join(
    [
        "Run benchmark NAME and print its markdown table (optionally its result as JSON).",
        "\b\n" + "\n".join(f"{n:10s} {b.about}" for n, b in BENCHMARKS.items()),
    ]
)


@click.command("bench", help=_HELP)
@click.argument("name", type=click.Choice(list(BENCHMARKS)))
@click.option(
    "--quick",
    is_flag=True,
    default=False,
    show_default=True,
    help="small preset; " + "; ".join(f"{n}: {b.quick}" for n, b in BENCHMARKS.items()),
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="also write the result to this JSON file (atomically)",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="write NAME.json, NAME.md and the benchmark's PNG plots into this directory",
)
@click.option(
    "--preset",
    "preset_name",
    type=str,
    default=None,
    help="a named preset of the benchmark instead of quick/full (editing and edge: cpu, the "
    "size behind RESULTS.md's CPU tables)",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="change one field of the preset (repeatable): e.g. --set steps=100 --set "
    "methods=SDEdit,NGDM; tuples are comma-separated",
)
@click.option(
    "--family",
    type=str,
    default=None,
    help="the model family of a benchmark that has several (sd-speed: sd, sdxl, sd3, flux); the "
    "same as --set family=NAME",
)
@device_option
@quiet_option
@overwrite_option
@input_errors
def bench(
    name: str,
    quick: bool,
    json_path: Path | None,
    out_dir: Path | None,
    preset_name: str | None,
    assignments: tuple[str, ...],
    family: str | None,
    device: str,
    quiet: bool,
    overwrite: bool,
) -> None:
    from ..bench._presets import run_preset
    from ..bench._report import pyplot, report

    if json_path is not None:
        check_outputs([json_path], [], overwrite)
    if out_dir is not None:
        check_outputs([out_dir / f"{name}.json", out_dir / f"{name}.md"], [], overwrite)
        pyplot()  # fail now, not after the run, if matplotlib is missing
    spec = BENCHMARKS[name]
    module = importlib.import_module(spec.module)
    dev = resolve_device(device)
    result: dict[str, Any]
    if family is not None:
        presets = getattr(module, "PRESETS", {})
        if not any("family" in getattr(p, "__dataclass_fields__", {}) for p in presets.values()):
            raise ValueError(f"benchmark {name} has no model families; --family does not apply")
        assignments = (*assignments, f"family={family}")
    if (preset_name is not None or assignments) and "preset" not in inspect.signature(
        module.run
    ).parameters:
        raise ValueError(f"benchmark {name} has no presets; --preset and --set do not apply")
    with progress_bar(None, name, quiet, unit="part") as bar, _progress_lines(name, bar):
        if preset_name is not None or assignments:
            result = run_preset(
                module.run, module.PRESETS, quick, preset_name, assignments, device=dev
            )
        else:
            result = module.run(quick=quick, device=dev)
    report(
        result, getattr(module, spec.table), json_path, name=name, out=out_dir,
        plot=getattr(module, "plot", None), overwrite=overwrite,
    )  # fmt: skip


class _ProgressLines(io.TextIOBase):
    """stderr while benchmark ``name`` runs: its ``[name] message`` progress lines
    (:func:`nidiff.bench._report.progress`) move the bar (its description is the latest
    message; with ``--quiet`` or no terminal they are dropped); everything else passes."""

    def __init__(self, name: str, bar: Any, real: Any):
        self.tag, self.bar, self.real, self.pending = f"[{name}] ", bar, real, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.startswith(self.tag):
                self.bar.set_description_str(line[len(self.tag) :])
                self.bar.update(1)
            elif hasattr(self.bar, "write"):  # a tqdm bar: clear it, write, redraw
                self.bar.write(line, file=self.real)
            else:
                self.real.write(line + "\n")
        if self.pending and not self.tag.startswith(self.pending[: len(self.tag)]):
            self.real.write(self.pending)  # not a progress line: no need to wait for its end
            self.pending = ""
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return self.real.isatty()


@contextlib.contextmanager
def _progress_lines(name: str, bar: Any) -> Iterator[None]:
    lines = _ProgressLines(name, bar, sys.stderr)
    with contextlib.redirect_stderr(lines):
        yield
    if lines.pending:
        lines.real.write(lines.pending)
