"""Every public module imports on its own, as a user's first import (guards import cycles)."""

import subprocess
import sys

import pytest

MODULES = [
    "nidiff",
    "nidiff.process",
    "nidiff.samplers",
    "nidiff.models",
    "nidiff.editing",
    "nidiff.inversion",
    "nidiff.training.trainer",
    "nidiff.metrics",
    "nidiff.cli",
]


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first(module):
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_core_does_not_import_diffusers():
    code = (
        "import sys, nidiff.schedule, nidiff.noise, nidiff.samplers, nidiff.models; "
        "print('diffusers' in sys.modules, 'transformers' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.split() == ["False", "False"], r.stdout + r.stderr
