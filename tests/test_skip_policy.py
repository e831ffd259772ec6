"""The suite's skip policy (tests/conftest.py): an undeclared skip fails the run, a declared one
(a marker of DECLARED_SKIPS) stays a skip, xfail is untouched, and NIDIFF_ALLOW_SKIPS=1 turns the
policy off for one run. Run on a throw-away suite in a fresh pytest process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = """
import pytest

def test_skips_inside():
    pytest.skip("no data here")

@pytest.mark.skipif(True, reason="dataset missing")
def test_skipif():
    pass

@pytest.mark.cuda
def test_on_cuda():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_xfail():
    assert False

def test_runs():
    pass
"""


def _run(tmp_path: Path, files: dict[str, str], **env: str) -> tuple[dict[str, int], str]:
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    clean = {k: v for k, v in os.environ.items() if k != "NIDIFF_ALLOW_SKIPS"}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        env={**clean, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    last = r.stdout.strip().splitlines()[-1]
    counts = {w: int(n) for n, w in re.findall(r"(\d+) (\w+)", last)}
    return {**counts, "rc": r.returncode}, r.stdout


def test_undeclared_skips_fail_and_declared_ones_stay_skips(tmp_path):
    import torch

    counts, out = _run(tmp_path, {"test_suite.py": SUITE})
    cuda = torch.cuda.is_available()
    expected = {"failed": 1, "error": 1, "passed": 2 if cuda else 1, "xfailed": 1, "rc": 1}
    if not cuda:
        expected["skipped"] = 1
    assert counts == expected, out
    assert "undeclared skip: no data here" in out and "undeclared skip: dataset missing" in out
    if not cuda:
        assert "declared (cuda): needs a CUDA device" in out


def test_a_module_level_skip_fails_collection(tmp_path):
    module = (
        'import pytest\npytest.importorskip("no_such_module_nidiff")\n\n\ndef test_x():\n    pass\n'
    )
    counts, out = _run(tmp_path, {"test_mod.py": module})
    assert counts["rc"] != 0 and counts.get("error") == 1, out
    assert "undeclared skip: could not import 'no_such_module_nidiff'" in out


@pytest.mark.parametrize("value", ["1", "true"])
def test_allow_skips_turns_the_policy_off_for_one_run(tmp_path, value):
    counts, out = _run(tmp_path, {"test_suite.py": SUITE}, NIDIFF_ALLOW_SKIPS=value)
    assert counts["rc"] == 0 and counts["skipped"] >= 2 and "failed" not in counts, out
