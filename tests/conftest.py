"""Test support shared across folders, and the suite's skip policy.

**Support.** ``import tiny_sd`` (a tiny offline Stable Diffusion pipeline,
``tests/support/tiny_sd.py``) and the other helpers there: tests are not a package under
importlib mode, so the support folder is put on the path here, before any test module is imported.

**No silent skips.** A test that skips is a test that no longer runs, and a green run hides it:
seven end-to-end tests once skipped for months because nothing installed Fashion-MNIST. So every
skip fails the run (as a failed test, or a collection error for a module-level skip) unless it is
declared in :data:`DECLARED_SKIPS`, the one list of the skips a run may have, each with its reason.
A declared skip comes from a marker: ``@pytest.mark.cuda`` tests skip, as declared, without CUDA.
This holds for every run, CI (``.ci/run``) and ``make test`` alike; on a machine that cannot
install a dependency (say ``dataset-fashion-mnist``), ``NIDIFF_ALLOW_SKIPS=1`` lets skips be
skips again for that run (``.ci/run`` refuses it). ``xfail`` is not a skip and is unaffected.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).with_name("support")))

#: marker → (whether its tests skip on this machine, why). The only skips a run may have.
DECLARED_SKIPS: dict[str, tuple[Callable[[], bool], str]] = {
    "cuda": (lambda: not torch.cuda.is_available(), "needs a CUDA device (none here)"),
}
ALLOW_ENV = "NIDIFF_ALLOW_SKIPS"
_DECLARED = pytest.StashKey[bool]()


def _strict() -> bool:
    return os.environ.get(ALLOW_ENV, "") not in ("1", "true", "yes")


def _undeclared(reason: str) -> str:
    return (
        f"undeclared skip: {reason}\n(every skip fails the run unless tests/conftest.py "
        f"declares it in DECLARED_SKIPS; install what the test needs, e.g. `apt-get install "
        f"dataset-fashion-mnist` for Fashion-MNIST, or set {ALLOW_ENV}=1 for this run)"
    )


def _reason(longrepr: object) -> str:
    """The message of a skip report (pytest stores ``(path, line, message)``)."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_configure(config: pytest.Config) -> None:
    for marker, (_, reason) in DECLARED_SKIPS.items():
        config.addinivalue_line("markers", f"{marker}: declared skip where it {reason}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, (skips, reason) in DECLARED_SKIPS.items():
        if item.get_closest_marker(marker) is not None and skips():
            item.stash[_DECLARED] = True
            pytest.skip(f"declared ({marker}): {reason}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and not item.stash.get(_DECLARED, False)
        and _strict()
    ):
        report.outcome = "failed"
        report.longrepr = _undeclared(_reason(report.longrepr))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = yield
    if report.skipped and _strict():  # a module-level skip (e.g. importorskip) of a whole file
        report.outcome = "failed"
        report.longrepr = _undeclared(_reason(report.longrepr))
    return report
