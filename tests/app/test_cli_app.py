"""``nidiff app`` as a command: listed and documented, safe defaults, the rest of the CLI working
without gradio, and start-up failures as one ``Error:`` line (exit 2)."""

from __future__ import annotations

import socket
import subprocess
import sys

from cli_calls import run
from studio_server import START_TIMEOUT

WITHOUT_GRADIO = "import sys; sys.modules['gradio'] = None; from nidiff.cli import main; main({})"


def nidiff(*args: str, code: str = "from nidiff.cli import main; main({})"):
    return subprocess.run(
        [sys.executable, "-c", code.format(list(args))], capture_output=True, text=True,
        timeout=START_TIMEOUT,
    )  # fmt: skip


def test_app_is_a_command_with_safe_defaults():
    result = run("app", "--help")
    assert result.exit_code == 0, result.output
    for text in ("--model", "--host", "127.0.0.1", "--port", "7860"):
        assert text in result.output
    assert "app" in run("--help").output


def test_the_cli_runs_without_gradio():
    listed = nidiff("--help", code=WITHOUT_GRADIO)
    assert listed.returncode == 0 and " app " in listed.stdout, listed.stderr
    refused = nidiff("app", code=WITHOUT_GRADIO)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "pip install 'nidiff[app]'" in refused.stderr


def test_a_port_in_use_is_one_error_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = nidiff("app", "--port", str(busy.getsockname()[1]))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "cannot serve" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
