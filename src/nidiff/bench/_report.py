"""The end of every benchmark's ``main``: print the markdown table, optionally save the JSON."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._io import write_json


def report(result: dict[str, Any], table: Callable[[dict[str, Any]], str], json: Path | None):
    """Print ``table(result)``; write ``result`` to ``json`` atomically when a path is given."""
    print(table(result))
    if json is not None:
        write_json(json, result)
