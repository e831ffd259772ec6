"""The ``nidiff`` command line: a thin layer over the library (one module per command).

Commands: ``edit`` (any editing method on one image), ``invert`` and ``regenerate``
(edit-friendly inversion and its manipulations), ``sample`` (a grid of samples), ``train``
(isotropic, GFF or edge-preserving models) and ``bench`` (measured benchmarks). Every command
writes a JSON provenance record ``OUT.json`` next to its output. ``--model`` takes a bundled
name, a nidiff model directory or a Stable Diffusion pipeline directory; commands see either
through one protocol (:mod:`nidiff.cli.model`: :mod:`~nidiff.cli.pixel`,
:mod:`~nidiff.cli.latent`). Exit codes: 0 success, 2 bad usage or input, 1 internal error.

Start-up: importing this package imports neither torch nor any command; a command's module is
imported when it runs (or when ``--help`` lists it), so ``nidiff edit`` pays only for editing,
and :func:`main` applies the thread policy (:mod:`nidiff._threads`) before torch loads.
"""

from __future__ import annotations

import importlib
import sys

import click

from .._threads import apply_thread_policy

__all__ = ["COMMANDS", "cli", "main"]

#: Command name → the module of :mod:`nidiff.cli` that defines it (a click command of that name).
COMMANDS: dict[str, str] = {
    "edit": "edit",
    "invert": "invert",
    "regenerate": "regenerate",
    "sample": "sample",
    "train": "train",
    "bench": "bench",
    "app": "app",
}


class _LazyGroup(click.Group):
    """A group whose commands are imported on first use (see the module docstring), and whose
    usage errors are one line, like every other error (exit 2)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as err:  # click's own: a usage block, a hint, then the error
            where = err.ctx.command_path if err.ctx is not None else "nidiff"
            click.echo(f"Error: {err.format_message()} (see '{where} --help')", err=True)
            sys.exit(err.exit_code)
        except click.ClickException as err:
            err.show()
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context | None, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"{__name__}.{COMMANDS[cmd_name]}")
        return getattr(module, cmd_name)


@click.group(
    "nidiff",
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@click.version_option(package_name="nidiff")
@click.option(
    "--max-params",
    type=click.FloatRange(min=1),
    default=None,
    help="largest network a model directory may ask for, in parameters (default 1e9; also "
    "NIDIFF_MAX_PARAMS); a config above it is refused before anything is built",
)
@click.pass_context
def cli(ctx: click.Context, max_params: float | None) -> None:
    """nidiff: non-isotropic Gaussian diffusion (NGDM, edge-preserving, GFF, edit-friendly
    inversion) on the bundled Fashion-MNIST models or your own."""
    if max_params is not None:
        # through the environment so that worker processes (torchrun) see it too; only for this
        # command: an in-process caller's environment is restored when it ends
        import os

        before = os.environ.get("NIDIFF_MAX_PARAMS")
        os.environ["NIDIFF_MAX_PARAMS"] = str(int(max_params))
        ctx.call_on_close(lambda: _restore_env("NIDIFF_MAX_PARAMS", before))


def _restore_env(name: str, value: str | None) -> None:
    import os

    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``nidiff`` console script and ``python -m nidiff.cli``."""
    apply_thread_policy()
    cli.main(args=argv, prog_name="nidiff")
