"""Batch mode of ``nidiff edit``: rows from a folder or a CSV file, output names, sharding, and
running the rows (a bad row is skipped and reported, or stops the batch: ``--on-error``)."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from .._io import clean_stale
from .common import InputError, progress_bar, record_path

__all__ = [
    "ROW_ERRORS",
    "Row",
    "is_batch",
    "on_error_option",
    "read_rows",
    "report_failures",
    "run_rows",
    "shard_of_env",
]

T = TypeVar("T")
#: What one row's bad input raises (an unreadable or too large image, an unknown class, ...):
#: the row fails, the batch goes on (``--on-error skip``). Anything else is an internal error.
ROW_ERRORS = (click.ClickException, ValueError, FileNotFoundError, FileExistsError)

#: ``--on-error``: what a row that cannot be edited does to the batch.
on_error_option = click.option(
    "--on-error",
    type=click.Choice(["skip", "stop"]),
    default="skip",
    show_default=True,
    help="batch mode: skip a row that cannot be edited (unreadable image, unknown class, ...) and "
    "list the failed rows at the end (exit 1), or stop before anything is written (exit 2)",
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Row:
    """One edit of a batch: row ``index`` (its seed offset), input, classes and output file."""

    index: int
    image: Path
    source: str | None  # None: none given (an unconditional model takes none)
    target: str | None
    out: Path

    @property
    def given(self) -> set[str]:
        """The conditions this row names (``"source"``, ``"target"``)."""
        return {role for role in ("source", "target") if getattr(self, role) is not None}


def is_batch(path: Path) -> bool:
    """A folder or a ``.csv`` file means batch mode."""
    return path.is_dir() or path.suffix.lower() == ".csv"


def _slug(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum()) or "x"


def read_rows(
    path: Path,
    source: str | None,
    target: str | None,
    folder: Path,
    method: str,
    require: Collection[str] = ("source", "target"),
) -> list[Row]:
    """The rows of a folder (every image, ``source`` → ``target``) or of a CSV file of
    ``image,source,target`` (image paths relative to the CSV; an optional header row; empty
    source/target cells fall back to ``--source``/``--target``). Every row must name the
    conditions in ``require`` (``()``: checked later, against the model:
    :func:`nidiff.methods.check_conditions`)."""
    if path.is_dir():
        named = {"source": source, "target": target}
        missing = [f"--{r}" for r in ("source", "target") if r in require and named[r] is None]
        if missing:
            raise InputError(f"a folder of images needs {' and '.join(missing)}")
        images = sorted(
            p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name[0] != "."
        )
        triples = [(p, source, target) for p in images]
    elif path.is_file():
        try:
            with path.open(newline="") as f:
                lines = [r for r in csv.reader(f) if any(c.strip() for c in r)]
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise InputError(f"{path} is not a readable CSV file ({err})") from err
        if lines and [c.strip().lower() for c in lines[0][:1]] == ["image"]:
            lines = lines[1:]
        triples = []
        for k, r in enumerate(lines, 1):
            cells = [c.strip() for c in r] + ["", ""]
            src, tgt = cells[1] or source, cells[2] or target
            lacks = ("source" in require and src is None) or ("target" in require and tgt is None)
            if not cells[0] or lacks or len(r) > 3:
                raise InputError(f"{path} row {k}: expected image,source,target, got {r}")
            triples.append((path.parent / cells[0], src, tgt))
    else:
        raise InputError(f"batch input {path} does not exist")
    if not triples:
        raise InputError(f"{path} holds no images to edit")
    rows = [
        Row(i, img, s, t, folder / f"{img.stem}-{method}{'' if t is None else '-' + _slug(t)}.png")
        for i, (img, s, t) in enumerate(triples)
    ]
    outs = [r.out for r in rows]
    if len(set(outs)) != len(outs):
        dup = next(o for o in outs if outs.count(o) > 1)
        raise InputError(f"two rows would both write {dup}; give their images distinct names")
    return rows


def shard_of_env() -> tuple[int, int]:
    """``(rank, world_size)`` from torchrun's ``RANK``/``WORLD_SIZE`` (``(0, 1)`` if unset)."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError as err:
        raise InputError(f"RANK/WORLD_SIZE must be integers ({err})") from err
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK={rank} must be in [0, WORLD_SIZE={world})")
    return rank, world


def _message(err: BaseException) -> str:
    text = err.format_message() if isinstance(err, click.ClickException) else str(err)
    return " ".join(text.split())


def run_rows(
    rows: Sequence[Row],
    prepare: Callable[[Row], T],
    edit: Callable[[Row, T], Any],
    *,
    on_error: str,
    label: str,
    quiet: bool = False,
) -> tuple[int, list[tuple[Row, str]]]:
    """Check every row with ``prepare`` (read its image, resolve its classes) before editing
    any, then ``edit`` them; returns ``(rows edited, [(failed row, message), ...])``.

    With ``on_error="stop"`` the first bad row is exit 2 (naming the row) and, if found while
    checking, nothing is written; with ``"skip"`` bad rows are collected and the rest edited.
    Temporaries that killed runs left for these rows' outputs are removed before editing, and
    once every row is done also the young ones (a live writer's are locked and kept).
    A progress bar of the rows goes to stderr when it is a terminal (not with ``quiet``).
    """
    if on_error not in ("skip", "stop"):
        raise ValueError(f"on_error={on_error!r} must be 'skip' or 'stop'")
    failures: list[tuple[Row, str]] = []

    def failed(r: Row, err: BaseException) -> None:
        if on_error == "stop":
            raise InputError(f"row {r.index + 1} ({r.image}): {_message(err)}") from err
        failures.append((r, _message(err)))

    work: list[tuple[Row, T]] = []
    for r in rows:
        try:
            work.append((r, prepare(r)))
        except ROW_ERRORS as err:
            failed(r, err)
    outputs: dict[Path, set[str]] = {}
    for r, _ in work:
        outputs.setdefault(r.out.parent, set()).update({r.out.name, record_path(r.out).name})
    for folder, names in outputs.items():
        clean_stale(folder, names)
    edited = 0
    with progress_bar(len(work), label, quiet, unit="row") as bar:
        for r, item in work:
            try:
                edit(r, item)
                edited += 1
            except ROW_ERRORS as err:
                failed(r, err)
            bar.update(1)
    for folder, names in outputs.items():  # what a killed run left too young to remove above
        clean_stale(folder, names, min_age=0.0)
    return edited, failures


def report_failures(failures: Sequence[tuple[Row, str]], total: int) -> None:
    """List the failed rows on stderr and exit 1; nothing if every row succeeded."""
    if not failures:
        return
    click.echo(f"Error: {len(failures)} of {total} rows failed (a re-run retries them):", err=True)
    for r, message in sorted(failures, key=lambda f: f[0].index):
        click.echo(f"  row {r.index + 1} ({r.image}): {message}", err=True)
    raise click.exceptions.Exit(1)
