"""The end of every benchmark: print the markdown table; save the JSON, the table and the plots.

A benchmark module exposes ``run(quick, device) -> dict`` (JSON-safe), a table formatter
``markdown(result) -> str`` and, when it has figures, ``plot(result, directory) -> list[Path]``
(PNG files written atomically with :func:`save_figure`). ``--out DIR`` of ``nidiff bench`` and of
each ``python -m nidiff.bench.NAME`` writes ``DIR/NAME.json``, ``DIR/NAME.md`` and the plots.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_path, write_json
from ._presets import run_preset

__all__ = [
    "data_run",
    "main_parser",
    "progress",
    "pyplot",
    "report",
    "save_figure",
    "write_outputs",
]

Plot = Callable[[dict[str, Any], Path], list[Path]]


def main_parser(
    description: str, *, root: bool = False, presets: Mapping[str, Any] | None = None
) -> argparse.ArgumentParser:
    """The options every ``python -m nidiff.bench.NAME`` shares: ``--device``, ``--json``,
    ``--out``, for benchmarks on Fashion-MNIST ``--root``, and with ``presets`` a ``--preset``
    naming one of them and ``--set KEY=VALUE`` changing one of its fields (both read by
    :func:`data_run`); the module adds ``--quick``."""
    ap = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    ap.add_argument(
        "--out", type=Path, default=None, help="write NAME.json, NAME.md and the plots here"
    )
    if root:
        from ..data.fashion_mnist import DEFAULT_DIR

        ap.add_argument("--root", type=Path, default=DEFAULT_DIR, help="Fashion-MNIST folder")
    if presets:
        ap.add_argument(
            "--preset",
            choices=list(presets),
            default=None,
            help="a named preset (overrides --quick)",
        )
        ap.add_argument(
            "--set",
            dest="assignments",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="change one field of the preset (repeatable), e.g. steps=100 or "
            "strengths=0.3,0.5; tuples are comma-separated",
        )
    return ap


def progress(bench: str, message: str, seconds: float | None = None) -> None:
    """One line on stderr while a long benchmark runs (stdout stays the table): ``[bench]
    message`` and, when given, the seconds the part took."""
    tail = "" if seconds is None else f" ({seconds:.1f} s)"
    print(f"[{bench}] {message}{tail}", file=sys.stderr, flush=True)


def data_run(
    run: Callable[..., dict[str, Any]],
    *,
    quick: bool = False,
    preset: str | None = None,
    presets: Mapping[str, Any] | None = None,
    assignments: Sequence[str] = (),
    **kwargs: Any,
) -> dict[str, Any]:
    """``run(quick=quick, **kwargs)``; with ``presets``, the preset chosen by
    :func:`~nidiff.bench._presets.run_preset` (``preset`` or quick/full, then ``assignments``)
    is passed as ``preset=`` and the result's ``preset`` is its label. A missing
    dataset or a bad preset choice becomes one ``error:`` line on stderr and exit status 2 (bad
    input, as in the ``nidiff`` command)."""
    try:
        if presets is None:
            return run(quick=quick, **kwargs)
        return run_preset(run, presets, quick, preset, assignments, **kwargs)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(2) from err


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend.

    Raises:
        ValueError: matplotlib is not installed (``pip install nidiff[bench]``).
    """
    try:
        import matplotlib
    except ImportError as err:
        raise ValueError(
            "plots need matplotlib: pip install 'nidiff[bench]' (or matplotlib)"
        ) from err
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG at ``path`` atomically, then close it."""
    plt = pyplot()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def write_outputs(
    name: str,
    result: dict[str, Any],
    table: str,
    out: Path,
    plot: Plot | None = None,
    *,
    overwrite: bool = True,
) -> list[Path]:
    """Write ``out/NAME.json``, ``out/NAME.md`` and ``plot(result, out)``; return the paths.

    The plots are drawn into a hidden staging folder in ``out`` first and moved into place only
    after every one succeeded, so a failing plot leaves ``out`` as it was. Without ``overwrite``,
    an existing output (JSON, table or plot) raises ``FileExistsError`` before anything is
    written.
    """
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=out) as tmp:
            staged = plot(result, Path(tmp)) if plot is not None else []
            written = [out / f"{name}.json", out / f"{name}.md", *(out / p.name for p in staged)]
            existing = [p for p in written if p.exists()]
            if existing and not overwrite:
                raise FileExistsError(f"{existing[0]} exists; pass --overwrite to replace it")
            write_json(written[0], result)
            with atomic_path(written[1]) as md:
                md.write_text(table + "\n")
            for src, dst in zip(staged, written[2:], strict=True):
                os.replace(src, dst)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    return written


def report(
    result: dict[str, Any],
    table: Callable[[dict[str, Any]], str],
    json: Path | None,
    *,
    name: str | None = None,
    out: Path | None = None,
    plot: Plot | None = None,
    overwrite: bool = True,
) -> None:
    """Print ``table(result)``; write ``result`` to ``json`` atomically when a path is given, and
    the JSON, table and plots to ``out`` (as ``name``) when a directory is given (an existing
    output there is refused unless ``overwrite``)."""
    text = table(result)
    print(text)
    if json is not None:
        write_json(json, result)
        print(f"wrote {json}")
    if out is not None:
        if name is None:
            raise ValueError("report(out=...) needs the benchmark's name")
        for path in write_outputs(name, result, text, out, plot, overwrite=overwrite):
            print(f"wrote {path}")
