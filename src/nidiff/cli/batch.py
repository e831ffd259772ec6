"""Batch mode of ``nidiff edit``: rows from a folder or a CSV file, output names, sharding."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from .common import InputError

__all__ = ["Row", "is_batch", "read_rows", "shard_of_env"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Row:
    """One edit of a batch: row ``index`` (its seed offset), input, classes and output file."""

    index: int
    image: Path
    source: str
    target: str
    out: Path


def is_batch(path: Path) -> bool:
    """A folder or a ``.csv`` file means batch mode."""
    return path.is_dir() or path.suffix.lower() == ".csv"


def _slug(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum()) or "x"


def read_rows(
    path: Path, source: str | None, target: str | None, folder: Path, method: str
) -> list[Row]:
    """The rows of a folder (every image, ``source`` → ``target``) or of a CSV file of
    ``image,source,target`` (image paths relative to the CSV; an optional header row; empty
    source/target cells fall back to ``--source``/``--target``)."""
    if path.is_dir():
        if source is None or target is None:
            raise InputError("a folder of images needs --source and --target")
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
            if not cells[0] or src is None or tgt is None or len(r) > 3:
                raise InputError(f"{path} row {k}: expected image,source,target, got {r}")
            triples.append((path.parent / cells[0], src, tgt))
    else:
        raise InputError(f"batch input {path} does not exist")
    if not triples:
        raise InputError(f"{path} holds no images to edit")
    rows = [
        Row(i, img, s, t, folder / f"{img.stem}-{method}-{_slug(t)}.png")
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
