"""Benchmarks, one module per question, each importing nidiff like a user would.

Run one with ``python -m nidiff.bench.<name> --help``.

* :mod:`nidiff.bench.training` — cost of a GFF / edge-preserving training and sampling step
  relative to isotropic noise, at the same network and batch.
"""
