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
    "nidiff.defaults",
    "nidiff.methods",
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


def test_the_cli_package_imports_no_command_and_no_torch():
    """The thread policy (nidiff._threads) must act before torch loads, in ``main``."""
    code = (
        "import sys, nidiff.cli; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


# What a one-image edit of the bundled model must not pay for (seconds of imports between them).
HEAVY = ("diffusers", "transformers", "accelerate", "huggingface_hub", "scipy", "sympy",
         "matplotlib", "sklearn", "skimage", "torch._dynamo")  # fmt: skip


def test_editing_with_the_bundled_model_imports_only_what_it_uses(tmp_path):
    from nidiff.bundled import ASSETS

    image, out = ASSETS / "examples" / "sneaker-0.png", tmp_path / "out.png"
    code = (
        "import sys\nfrom nidiff.cli import main\ntry:\n"
        f"    main(['edit', {str(image)!r}, '-s', 'sneaker', '-t', 'sandal', '--method', "
        f"'sdedit', '--steps', '2', '--out', {str(out)!r}])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and out.is_file(), r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout
