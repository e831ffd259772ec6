"""The thread policy of nidiff's programs (nidiff._threads): what it sets, that a user's own
setting wins, and that every entry point applies it before torch is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nidiff._threads import POLICY, WAIT_VARIABLES, apply_thread_policy, thread_env

# Runs an entry point's first import, then reports the policy's variable and whether torch was
# already loaded when the policy ran (the policy records nothing then).
PROBE = """
import json, os, sys
{entry}
import torch
from nidiff import _threads
print(json.dumps({{"env": os.environ.get("OMP_WAIT_POLICY"), "applied": _threads.APPLIED}}))
"""
ENTRIES = {
    "nidiff command": "from nidiff.cli import main\ntry:\n    main(['edit', '--help'])\n"
    "except SystemExit:\n    pass",
    "python -m nidiff.bench.NAME": "import nidiff.bench.speed",
    "python -m nidiff.demo": "import nidiff.demo",
}


def _probe(entry: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in WAIT_VARIABLES}
    r = subprocess.run(
        [sys.executable, "-c", PROBE.format(entry=ENTRIES[entry])],
        env={**clean, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_thread_env_adds_passive_waiting_unless_the_user_chose():
    assert thread_env({}) == POLICY == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert thread_env({"OMP_NUM_THREADS": "4"}) == POLICY  # the thread count is not a choice
    for name in WAIT_VARIABLES:  # of how to wait
        assert thread_env({name: "0"}) == {}


def test_apply_changes_nothing_once_torch_is_loaded():
    import torch  # noqa: F401  (loaded: the OpenMP runtime has read its environment)

    env: dict[str, str] = {}
    assert apply_thread_policy(env) == {} and env == {}


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_entry_point_applies_the_policy_before_torch(entry):
    assert _probe(entry) == {"env": "PASSIVE", "applied": POLICY}


def test_the_users_own_variables_win():
    entry = "nidiff command"
    assert _probe(entry, OMP_WAIT_POLICY="ACTIVE") == {"env": "ACTIVE", "applied": {}}
    assert _probe(entry, GOMP_SPINCOUNT="1000") == {"env": None, "applied": {}}
