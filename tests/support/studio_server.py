"""A ``nidiff app`` server in a subprocess for the studio's tests, and the requests they send.

The server runs as a user runs it (``python -m nidiff.cli app --port P``) with its own empty
home, working and temporary folders, so a test can check that it writes nowhere but its own
temporary folder; :meth:`Server.peak_rss` reads its peak resident memory from ``/proc``.
:func:`edit_args` builds an ``/edit`` request in the order the page declares
(:data:`nidiff.app.layout.INPUTS`, then :data:`nidiff.app.fields.FROM_CLI`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nidiff.app.fields import FROM_CLI, defaults
from nidiff.app.layout import INPUTS
from nidiff.bundled import ASSETS

EXAMPLES = ASSETS / "examples"
#: Few steps on the bundled 28×28 model keep every test fast.
STEPS, SKIP = 10, 3
#: Where the Debian package puts Chromium (the browser test's default).
CHROMIUM = "/usr/bin/chromium"
#: A quiet, offline, throwaway browser: no sandbox (CI runs as root), no GPU, no network
#: services of its own, no proxy for localhost.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-proxy-server",
]  # fmt: skip
#: The command that starts the studio.
APP = [sys.executable, "-m", "nidiff.cli", "app"]
#: How long a server may take to start on a busy 2-core machine (imports torch and gradio).
START_TIMEOUT = 180.0


@dataclass
class Server:
    """A running studio: its process, its URL and the folders it was given."""

    proc: subprocess.Popen
    url: str
    home: Path
    cwd: Path
    tmp: Path
    log: Path

    def peak_rss(self) -> int:
        """The process's peak resident memory in bytes (``VmHWM``)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc status")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def app_folder(self) -> Path:
        """The studio's own temporary folder (``nidiff-app-*`` in the server's ``TMPDIR``)."""
        (folder,) = self.tmp.glob("nidiff-app-*")
        return folder

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; returns the exit status."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base: Path, *args: str) -> Server:
    """Start ``nidiff app`` on a free localhost port with its home, working and temporary
    folders under ``base``; returns once the page is served."""
    home, cwd, tmp = (base / name for name in ("home", "cwd", "tmp"))
    for folder in (home, cwd, tmp):
        folder.mkdir(parents=True)
    port, log = free_port(), base / "server.log"
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1",
           "NO_PROXY": "127.0.0.1,localhost"}  # fmt: skip
    cmd = [*APP, "--port", str(port), "--device", "cpu"]
    with log.open("w") as out:
        proc = subprocess.Popen([*cmd, *args], cwd=cwd, env=env, stdout=out, stderr=out)
    server = Server(proc, f"http://127.0.0.1:{port}/", home, cwd, tmp, log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"nidiff app exited ({proc.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(server.url, timeout=5) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"nidiff app did not serve {server.url} in {START_TIMEOUT:g} s")


def fields(**changes: Any) -> dict[str, Any]:
    """The page's default fields with few steps (every skip field ``SKIP``), and ``changes``."""
    skips = {name: SKIP for name, (option, _) in FROM_CLI.items() if option == "skip"}
    values = defaults() | {"steps": STEPS} | skips
    unknown = set(changes) - set(values)
    assert not unknown, unknown
    return values | changes


def edit_args(image: Any, source: str, target: str, methods: list[str], editor: Any = None,
              example: str | None = None, **changes: Any) -> list[Any]:  # fmt: skip
    """The positional arguments of an ``/edit`` request."""
    head = {"image": image, "example": example, "source": source, "target": target,
            "editor": editor, "methods": methods}  # fmt: skip
    values = fields(**changes)
    return [head[n] for n in INPUTS["edit"]] + [values[n] for n in FROM_CLI]
