"""Fixtures of the studio's tests: a ``nidiff app`` server shared by the browser and bad-input
tests, and the system Chromium the browser test drives.

Nothing here skips: the studio's tests are part of CI, so a missing Chromium or a missing
Python dependency fails with what to install (``scripts/install_browser.sh``, the ``dev``
extra), never a skip that hides a test CI does not run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from studio_server import CHROMIUM, Server, start_server


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary; the test fails (not skips) without it."""
    path = os.environ.get("NIDIFF_CHROMIUM") or shutil.which("chromium") or CHROMIUM
    if not Path(path).is_file():
        pytest.fail(
            f"Chromium not found ({path}): the studio's browser test needs Debian's chromium "
            "package; run scripts/install_browser.sh (as root: apt-get install -y chromium) or "
            "set NIDIFF_CHROMIUM to a Chromium binary",
            pytrace=False,
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[dev]'", pytrace=False)
    return path


@pytest.fixture(scope="session")
def studio(tmp_path_factory) -> Iterator[Server]:
    """One ``nidiff app`` server (bundled model) for the browser and bad-input tests."""
    server = start_server(tmp_path_factory.mktemp("studio"))
    yield server
    server.stop()
