"""The JSON provenance record ``OUT.json`` every command writes beside its output: the command,
every parameter given to it, versions, timing and the command's own fields."""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import click
import torch

from .._io import write_json

__all__ = ["record_path", "write_record"]


def record_path(out: Path) -> Path:
    """The provenance record of an output: ``OUT.json`` (e.g. ``edit.png.json``)."""
    return out.with_name(out.name + ".json")


def _version() -> str:
    try:
        return version("nidiff")
    except PackageNotFoundError:  # pragma: no cover (running from a source tree)
        return "unknown"


def _plain(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, torch.Tensor):
        return v.tolist()
    return v


def write_record(out: Path, command: str, started: float, **fields: Any) -> None:
    """Write ``OUT.json``: the command, every parameter given to it, versions, timing and
    ``fields`` (method info, nfe, model ...)."""
    params = click.get_current_context().params
    record = {
        "command": command,
        "params": _plain(dict(params)),
        "nidiff": _version(),
        "torch": torch.__version__,
        **_plain(fields),
        "seconds": time.perf_counter() - started,
    }
    write_json(record_path(out), record)
