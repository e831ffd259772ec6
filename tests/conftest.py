"""Test support shared across folders: ``import tiny_sd`` (a tiny offline Stable Diffusion
pipeline, ``tests/support/tiny_sd.py``). Tests are not a package under importlib mode, so the
support folder is put on the path here, before any test module is imported."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).with_name("support")))
