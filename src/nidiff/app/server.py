"""Serving the studio: offline, on localhost by default, writing only into its own folder.

Before the model or gradio load, the process makes a fresh temporary folder and points every
cache it would otherwise write elsewhere into it (gradio's uploads and outputs, matplotlib's
font cache, which gradio's import builds, torch's compile cache, which torch creates when its
compiler modules load); the folder is removed when the server stops. Nothing reaches the
internet: analytics and the Hugging Face hub are off, and the page needs no CDN (gradio serves
its own assets and the default theme's fonts). Requests go through gradio's queue,
``concurrency`` at a time and at most ``queue_size`` waiting, and uploads larger than
``max_upload_bytes`` are refused by gradio before they reach the studio.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .limits import LIMITS, Limits

__all__ = ["OFFLINE_ENV", "serve", "start", "workspace"]

#: Environment that keeps gradio and the Hugging Face hub off the network.
OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "GRADIO_SSR_MODE": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
#: Caches pointed into the studio's folder: variable → sub-folder.
CACHES = {
    "GRADIO_TEMP_DIR": "gradio",  # read when gradio is imported
    "MPLCONFIGDIR": "matplotlib",
    "TORCHINDUCTOR_CACHE_DIR": "torch",
    "XDG_CACHE_HOME": "cache",
    "XDG_CONFIG_HOME": "config",
    "HF_HOME": "huggingface",
}


def workspace() -> Path:
    """Make the studio's temporary folder and point this process's caches and gradio into it
    (:data:`CACHES`, :data:`OFFLINE_ENV`); call it before the model and gradio load."""
    root = Path(tempfile.mkdtemp(prefix="nidiff-app-"))
    os.environ.update(OFFLINE_ENV)
    os.environ.update({name: str(root / sub) for name, sub in CACHES.items()})
    return root


def start(m: Any, root: Path, host: str, port: int, limits: Limits = LIMITS) -> Any:
    """Launch the studio of model ``m`` with folder ``root`` without blocking; returns the
    gradio app (stop it with ``close()``).

    Raises:
        OSError: the port cannot be bound.
    """
    from .layout import CSS, build
    from .studio import Studio

    demo = build(Studio(m, root, limits))
    demo.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)
    demo.launch(
        server_name=host, server_port=port, share=False, inbrowser=False,
        prevent_thread_lock=True, quiet=True, show_error=False, ssr_mode=False,
        max_file_size=limits.max_upload_bytes, allowed_paths=[], strict_cors=True,
        enable_monitoring=False, mcp_server=False, pwa=False, css=CSS,
    )  # fmt: skip
    return demo


def serve(load: Callable[[], Any], host: str, port: int, limits: Limits = LIMITS) -> None:
    """Make the workspace, load the model (``load()``), run the studio until interrupted
    (Ctrl-C or SIGTERM), then remove the workspace, also when loading or binding fails."""
    import click

    root = workspace()
    try:
        m = load()
        demo = start(m, root, host, port, limits)
        signal.signal(signal.SIGTERM, _interrupt)
        click.echo(f"nidiff studio on http://{host}:{port} (model {m.name}; Ctrl-C stops it)")
        try:
            demo.block_thread()
        finally:
            demo.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
