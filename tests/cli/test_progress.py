"""Progress on stderr: long commands (``edit``, batch ``edit``, ``invert``, ``train``, ``bench``)
draw a tqdm bar when stderr is a terminal, and nothing with ``--quiet`` or when stderr is a pipe
or a file. The terminal is a real pseudo-terminal for a fresh ``nidiff`` process; in-process
calls (``CliRunner``, never a terminal) stand ``show_progress`` in for it."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from cli_calls import ok

import nidiff.cli.progress as progress
from nidiff.bundled import ASSETS

SNEAKER = ASSETS / "examples" / "sneaker-0.png"
NIDIFF = [sys.executable, "-c", "from nidiff.cli import main; main()"]


def stderr_of(args: list[str], cwd: Path, terminal: bool) -> str:
    """Run ``nidiff ARGS`` with stderr on a pseudo-terminal (or a pipe); its stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100"}
    if not terminal:
        done = subprocess.run([*NIDIFF, *args], cwd=cwd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24 × 100
    proc = subprocess.Popen([*NIDIFF, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=follower)  # fmt: skip
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the process closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait() == 0, b"".join(chunks)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize(
    "args, bar",
    [(["invert", str(SNEAKER), "-s", "sneaker", "--steps", "4", "--out", "i.safetensors"],
      "invert: 100%"),
     (["edit", str(SNEAKER), "-s", "sneaker", "-t", "sandal", "--method", "ngdm", "--steps", "4",
       "--out", "e.png"], "edit ngdm: 100%")],
)  # fmt: skip
def test_a_terminal_gets_a_bar_quiet_and_pipes_do_not(tmp_path, args, bar):
    shown = stderr_of([*args, "--overwrite"], tmp_path, terminal=True)
    assert bar in shown and "call" in shown, shown
    assert stderr_of([*args, "--overwrite", "--quiet"], tmp_path, terminal=True) == ""
    assert stderr_of([*args, "--overwrite"], tmp_path, terminal=False) == ""


@pytest.fixture
def terminal(monkeypatch):
    """In-process calls as if stderr were a terminal."""
    monkeypatch.setattr(progress, "show_progress", lambda quiet: not quiet)
    import nidiff.cli.train as train

    monkeypatch.setattr(train, "show_progress", lambda quiet: not quiet)


def test_batch_train_and_bench_bars(tmp_path, monkeypatch, terminal):
    rows = tmp_path / "rows"
    rows.mkdir()
    for name in ("a.png", "b.png"):
        (rows / name).write_bytes(SNEAKER.read_bytes())
    batch = ("edit", rows, "-s", "sneaker", "-t", "sandal", "--method", "sdedit", "--steps", "3")
    assert "2/2" in ok(*batch, "--out", tmp_path / "e1").stderr
    assert ok(*batch, "--out", tmp_path / "e2", "--quiet").stderr == ""

    train = ("train", "--noise", "isotropic", "--data", "digits", "--channels", "8,16",
             "--batch-size", "4", "--steps", "3")  # fmt: skip
    assert "3/3" in ok(train[0], tmp_path / "t1", *train[1:]).stderr
    assert "3/3" not in ok(train[0], tmp_path / "t2", *train[1:], "--quiet").stderr

    from nidiff.bench import editing
    from nidiff.bench._report import progress

    def fake_run(**kwargs):
        for part in ("pair 1", "pair 2"):
            progress("editing", part, 0.5)
        print("a warning", file=sys.stderr)
        return {"value": 1}

    monkeypatch.setattr(editing, "run", fake_run)
    monkeypatch.setattr(editing, "markdown", lambda r: "| table |")
    shown = ok("bench", "editing", "--quick").stderr
    assert "pair 2 (0.5 s): 100%" in shown and "2/2" in shown, shown
    assert "[editing]" not in shown and "a warning" in shown
    quiet = ok("bench", "editing", "--quick", "--quiet").stderr
    assert "pair" not in quiet and "a warning" in quiet
