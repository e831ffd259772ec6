"""Benchmarks, one module per question, each importing nidiff like a user would.

Run one with ``nidiff bench NAME [--quick]`` or ``python -m nidiff.bench.<name> --help``.

* :mod:`nidiff.bench.training` — cost of a GFF / edge-preserving training and sampling step
  relative to isotropic noise, at the same network and batch.
* :mod:`nidiff.bench.overhead` — each editing method's wall time over its network time, and the
  network evaluations per edit with the papers' defaults.
* :mod:`nidiff.bench.inversion` — edit-friendly noise-map statistics, reconstruction error and
  the shift experiment (EF Fig. 5, 6, 11).
* :mod:`nidiff.bench.generation` — FID / precision / recall / accuracy of the bundled models'
  samples by sampler and number of steps (GFF paper Table 1 analog).
* :mod:`nidiff.bench.editing` — fidelity vs editability of NGDM, EF, NGDM+EF, SDEdit, ILVR,
  DDIM inversion, CycleDiffusion and DiffEdit on Fashion-MNIST class edits (NGDM / EF Table 1).
* :mod:`nidiff.bench.edge` — edge-preserving vs isotropic noise: sample quality, FID per
  frequency band and stroke-guided SDEdit (EP paper Table 1, Appendix B, Sec. 5).
* :mod:`nidiff.bench.sd_speed` — seconds per edit of NGDM, EF and diffusers' LEDITS++ (SD 1.x,
  SDXL) or nidiff's FlowEdit (SD3, FLUX) at equal steps on randomly initialised full-size
  architectures of a family (``--family``, the preset field ``family``).
* :mod:`nidiff.bench.speed` — the overhead and training-cost goals in one report with PASS/FAIL
  verdicts, throughput (images/s) against batch size, the cold start of a one-image edit and the
  slowdown beside a busy process.

Every ``python -m nidiff.bench.NAME`` imports this package first, so the thread policy of
nidiff's programs (:mod:`nidiff._threads`) is applied here, before any benchmark imports torch.
"""

from .._threads import apply_thread_policy

apply_thread_policy()
