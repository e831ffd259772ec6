"""``nidiff app``: the editing studio in the browser (:mod:`nidiff.app`; needs gradio,
``pip install 'nidiff[app]'``, imported only when the command runs)."""

from __future__ import annotations

import importlib.util

import click

from .common import InputError, device_options, model_option, size_option

__all__ = ["app"]

#: Addresses that reach only this machine.
LOCAL = ("127.0.0.1", "localhost", "::1")


@click.command("app")
@model_option
@device_options
@size_option
@click.option(
    "--host",
    type=str,
    default="127.0.0.1",
    show_default=True,
    help="address to listen on; anything but localhost exposes the studio to the network",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=7860, show_default=True, help="TCP port"
)
def app(model: str, device: str, dtype: str, size: int | None, host: str, port: int) -> None:
    """Start the editing studio: upload or pick an image, see and paint NGDM's change map,
    compare every editing method side by side on one cached inversion, download the results
    with their records. Runs offline; stop it with Ctrl-C."""
    if not _has_gradio():
        raise InputError("nidiff app needs gradio: pip install 'nidiff[app]'")
    from ..app.server import serve
    from .model import load_cli_model

    def load():  # inside the studio's workspace: the caches torch builds on loading go there
        m = load_cli_model(model, device=device, dtype=dtype, size=size)
        if m.sd is None and not m.m.num_classes:
            raise InputError(f"{model} is an unconditional model; the studio edits between classes")
        return m

    if host not in LOCAL:
        click.echo(
            f"Warning: listening on {host}: anyone who reaches it can use the studio", err=True
        )
    try:
        serve(load, host, port)
    except OSError as err:
        raise InputError(f"cannot serve on {host}:{port}: {err}") from err


def _has_gradio() -> bool:
    """Whether gradio can be imported (found, not imported: gradio reads its folders from the
    environment when imported, which :mod:`nidiff.app.server` sets first)."""
    try:
        return importlib.util.find_spec("gradio") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["gradio"] is None
        return False
