"""``python -m nidiff.cli`` runs the ``nidiff`` command (e.g. under ``torchrun --no-python``)."""

from . import main

main()
