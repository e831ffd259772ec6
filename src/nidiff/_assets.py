"""Where the files that ship with nidiff live (models, the classifier, examples): one path that
:mod:`nidiff.bundled` and :mod:`nidiff.metrics` both read without importing each other."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
#: The bundled Fashion-MNIST classifier's directory.
CLASSIFIER_DIR = ASSETS / "classifier"
