"""The ``nidiff`` command line: a thin layer over the library (one module per command).

Commands: ``edit`` (any editing method on one image), ``invert`` and ``regenerate``
(edit-friendly inversion and its manipulations), ``sample`` (a grid of samples), ``train``
(isotropic, GFF or edge-preserving models) and ``bench`` (measured benchmarks). Every command
writes a JSON provenance record ``OUT.json`` next to its output. ``--model`` takes a bundled
name, a nidiff model directory or a Stable Diffusion pipeline directory; commands see either
through one protocol (:mod:`nidiff.cli.model`: :mod:`~nidiff.cli.pixel`,
:mod:`~nidiff.cli.latent`). Exit codes: 0 success, 2 bad
usage or input, 1 internal error.
"""

from __future__ import annotations

import click

from . import bench, edit, invert, regenerate, sample, train

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="nidiff")
def cli() -> None:
    """nidiff: non-isotropic Gaussian diffusion (NGDM, edge-preserving, GFF, edit-friendly
    inversion) on the bundled Fashion-MNIST models or your own."""


for _command in (
    edit.edit,
    invert.invert,
    regenerate.regenerate,
    sample.sample,
    train.train,
    bench.bench,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``nidiff`` console script."""
    cli.main(args=argv, prog_name="nidiff")
