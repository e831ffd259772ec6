"""Progress of long commands on stderr: ``--quiet`` and a tqdm bar drawn only on a terminal
(a log file or a pipe gets none; tqdm is not imported then)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

__all__ = ["progress_bar", "quiet_option", "show_progress"]


def quiet_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--quiet``: no progress bar (:func:`progress_bar`)."""
    return click.option(
        "--quiet",
        "-q",
        is_flag=True,
        default=False,
        show_default=True,
        help="no progress bar on stderr (it is drawn only when stderr is a terminal)",
    )(fn)


def show_progress(quiet: bool) -> bool:
    """Whether a command draws progress: not ``--quiet``, and stderr is a terminal (a log file
    or a pipe gets none)."""
    return not quiet and sys.stderr.isatty()


class _NoBar:
    """What :func:`progress_bar` yields when nothing is drawn (tqdm is not even imported)."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_description_str(self, desc: str) -> None:
        pass


@contextlib.contextmanager
def progress_bar(total: int | None, desc: str, quiet: bool, unit: str = "it") -> Iterator[Any]:
    """A tqdm bar on stderr (:func:`show_progress`), finished at its count on exit (``total``
    may be an estimate, e.g. of the model calls of an edit)."""
    if not show_progress(quiet):
        yield _NoBar()
        return
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)
    try:
        yield bar
        bar.total = bar.n
        bar.refresh()
    finally:
        bar.close()
