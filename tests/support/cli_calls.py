"""Calling ``nidiff`` in-process for the CLI tests: ``run``, ``ok`` (exit 0) and ``bad`` (the
one-line usage error contract), plus the provenance record an output leaves beside it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from nidiff.cli import cli


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(*args: str | Path) -> Result:
    result = run(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def bad(*args: str | Path, match: str, out: Path | None = None) -> Result:
    """Exit 2, one ``Error:`` line naming the problem, no traceback; with ``out``, neither that
    output nor its record was written."""
    result = run(*args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and match in errors[0], result.stderr
    if out is not None:
        assert not out.exists() and not out.with_name(out.name + ".json").exists()
    return result


def record(out: Path) -> dict:
    """The provenance record ``OUT.json`` of an output."""
    return json.loads(out.with_name(out.name + ".json").read_text())
