"""Two parts of ``nidiff bench speed`` measured in fresh processes: the cold start of a one-image
edit, and a forward pass beside a busy process (the OpenMP contention cliff).

**Cold start** (:func:`cold_start`): the wall time of ``nidiff edit sneaker-0.png -s sneaker -t
sandal --method sdedit --steps 5`` on the bundled model, run as a new process, next to its
split, measured in another new process that does the same work step by step: importing torch,
the rest of what the command imports, loading the model and the image, the edit (its first
calls include PyTorch's lazy start-up), and the same edit again (the network work alone). Goal:
the command's wall time ≤ 2 × (python + torch import + network), where python + torch import is
the wall time of ``python -c "import torch"`` (start-up, the import, and the exit of a process
that holds torch: ~0.5 s more than the import itself).

**Contention** (:func:`contention`): the median time of a forward pass of the bundled model
(batch 2, 28², class-conditional) in a new process, alone and while one other process spins
on a core (alternating, ``rounds`` times, so that other load on a shared machine falls on both
sides alike), for three environments: PyTorch's defaults, nidiff's thread policy
(:mod:`nidiff._threads`) and one thread. Goal: busy ÷ idle ≤ 1.5 under the policy. All cases
start from the caller's environment without what the policy itself added, so a user's own
``OMP_*`` settings stay part of every case.

Fresh processes because both questions are about a new process: what it imports, and the
environment its OpenMP runtime read when torch loaded.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import _threads
from ..bundled import ASSETS

__all__ = [
    "CASES",
    "COLD_GOAL",
    "CONTENTION_GOAL",
    "case_env",
    "cold_start",
    "cold_start_table",
    "contention",
    "contention_table",
]

COLD_GOAL = 2.0
CONTENTION_GOAL = 1.5
CASES = ("torch default", "nidiff policy", "1 thread")
EXAMPLE = ASSETS / "examples" / "sneaker-0.png"
EDIT_ARGS = ("-s", "sneaker", "-t", "sandal", "--method", "sdedit", "--steps", "5")
_ENV_SHOWN = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", *_threads.WAIT_VARIABLES)

# The cold start, step by step, as `nidiff edit` does it (SDEdit's CLI defaults: strength 0.6,
# guidance 3, seed 0). Prints one JSON line of phase seconds.
_SPLIT = """
import json, sys, time
t0 = time.perf_counter()
from nidiff._threads import apply_thread_policy
apply_thread_policy()
import torch
t1 = time.perf_counter()
from nidiff.cli import cli
cli.get_command(None, "edit")
t2 = time.perf_counter()
from nidiff.bundled import load_bundled
from nidiff.data.folder import load_image
from nidiff.editing import sdedit
from nidiff.schedule import leading_grid
device = sys.argv[2]
m = load_bundled(device=device)
x0 = load_image(sys.argv[1], size=28, channels=1)[None].to(device)
t3 = time.perf_counter()
def edit():
    g = torch.Generator(device).manual_seed(0)
    tgt = torch.tensor([5], device=device)
    r = sdedit(m.denoiser, x0, m.process, leading_grid(m.schedule, 5), strength=0.6, cond=tgt,
               guidance=3.0, null_cond=m.denoiser.null_cond(), generator=g)
    float(r.x0.sum())
edit()
t4 = time.perf_counter()
edit()
t5 = time.perf_counter()
print(json.dumps({"torch_import_s": t1 - t0, "other_imports_s": t2 - t1, "load_s": t3 - t2,
                  "first_edit_s": t4 - t3, "network_s": t5 - t4}))
"""

# A forward pass alone and beside one spinning process. Prints one JSON line.
_FORWARD = """
import json, statistics, subprocess, sys, time
import torch
from nidiff.bundled import load_bundled
warmup, reps, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
m = load_bundled()
g = torch.Generator().manual_seed(0)
x, t, c = torch.randn(2, 1, 28, 28, generator=g), torch.tensor([500.0, 500.0]), torch.tensor([1, 2])
def times_ms(n):
    out = []
    with torch.inference_mode():
        for i in range(warmup + n):
            start = time.perf_counter()
            m.denoiser(x, t, c)
            if i >= warmup:
                out.append(1e3 * (time.perf_counter() - start))
    return out
idle, loaded = [], []
for r in range(rounds):
    n = reps // rounds + (r < reps % rounds)
    idle += times_ms(n)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        loaded += times_ms(n)
    finally:
        busy.kill()
        busy.wait()
print(json.dumps({"idle_ms": statistics.median(idle), "busy_ms": statistics.median(loaded),
                  "threads": torch.get_num_threads()}))
"""


def _base_env() -> dict[str, str]:
    """The caller's environment without what this process's thread policy added to it."""
    return {k: v for k, v in os.environ.items() if _threads.APPLIED.get(k) != v}


def case_env(case: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a contention case (:data:`CASES`), built on ``base`` (default: the
    caller's environment without the policy's own additions)."""
    env = dict(_base_env() if base is None else base)
    if case == "nidiff policy":
        env.update(_threads.thread_env(env))
    elif case == "1 thread":
        env["OMP_NUM_THREADS"] = "1"
    elif case != "torch default":
        raise ValueError(f"unknown contention case {case!r}; choose from {list(CASES)}")
    return env


def _child(args: list[str], env: dict[str, str], timeout: float = 600) -> tuple[str, float]:
    """Run ``python ARGS`` in a new process; its stdout and wall seconds. Raises on failure."""
    start = time.perf_counter()
    r = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        raise RuntimeError(f"python {' '.join(args[:3])} … failed: {r.stderr.strip()[-500:]}")
    return r.stdout, seconds


def _last_json(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])


def cold_start(repeats: int = 3, device: str = "cpu") -> dict[str, Any]:
    """The cold-start figures (module docstring), medians over ``repeats`` rounds.

    Returns a JSON-safe dict: ``command``, ``device``, ``repeats``, ``python_s`` (``python -c
    pass``), ``python_torch_s`` (``python -c "import torch"``), the split (``torch_import_s``,
    ``other_imports_s``, ``load_s``, ``first_edit_s``, ``network_s``), ``command_s`` (the
    command's wall time), ``floor_s`` (``python_torch_s + network_s``), ``goal_s`` (2 ×
    ``floor_s``), ``ratio`` (``command_s`` ÷ ``floor_s``), ``goal`` and every round in
    ``rounds``.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be >= 1")
    env = _base_env()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="nidiff-cold-") as tmp:
        out = Path(tmp) / "out.png"
        cli = ["-m", "nidiff.cli", "edit", str(EXAMPLE), *EDIT_ARGS, "--device", device]
        for _ in range(repeats):
            row = {"python_s": _child(["-c", "pass"], env)[1]}
            row["python_torch_s"] = _child(["-c", "import torch"], env)[1]
            row.update(_last_json(_child(["-c", _SPLIT, str(EXAMPLE), device], env)[0]))
            row["command_s"] = _child([*cli, "--out", str(out), "--overwrite"], env)[1]
            rounds.append(row)
    res: dict[str, Any] = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    floor = res["python_torch_s"] + res["network_s"]
    command = "nidiff edit sneaker-0.png " + " ".join(EDIT_ARGS)
    return {
        "command": command, "device": device, "repeats": repeats, **res, "floor_s": floor,
        "goal_s": COLD_GOAL * floor, "ratio": res["command_s"] / floor, "goal": COLD_GOAL,
        "rounds": rounds,
    }  # fmt: skip


def contention(
    cases: tuple[str, ...] = CASES, *, warmup: int = 3, reps: int = 20, rounds: int = 4
) -> dict[str, Any]:
    """Forward-pass milliseconds alone and beside a busy process for each of ``cases``: ``reps``
    timed passes on each side in ``rounds`` alternating blocks (each after ``warmup`` untimed).

    Returns a JSON-safe dict: ``warmup``, ``reps``, ``rounds``, ``goal`` and ``rows``, one per
    case with ``case``, ``env`` (its thread variables), ``threads``, ``idle_ms``, ``busy_ms``
    (medians) and ``ratio`` (busy ÷ idle).
    """
    if warmup < 0 or reps < 1 or not 1 <= rounds <= reps:
        raise ValueError(f"warmup={warmup} must be >= 0, reps={reps} >= 1, 1 <= rounds={rounds} "
                         "<= reps")  # fmt: skip
    rows = []
    for case in cases:
        env = case_env(case)
        args = ["-c", _FORWARD, str(warmup), str(reps), str(rounds)]
        res = _last_json(_child(args, env)[0])
        shown = {k: env[k] for k in _ENV_SHOWN if k in env}
        rows.append({"case": case, "env": shown, **res, "ratio": res["busy_ms"] / res["idle_ms"]})
    return {"warmup": warmup, "reps": reps, "rounds": rounds, "goal": CONTENTION_GOAL,
            "rows": rows}  # fmt: skip


def cold_start_table(res: dict[str, Any], verdict: Any) -> list[str]:
    """The cold-start split as markdown lines; ``verdict(ratio, goal)`` gives PASS / FAIL."""
    parts = [
        ("python start-up and exit (`python -c pass`, wall)", res["python_s"]),
        ('python + torch import (`python -c "import torch"`, wall)', res["python_torch_s"]),
        ("split: import torch", res["torch_import_s"]),
        ("split: the command's other imports", res["other_imports_s"]),
        ("split: load model and image", res["load_s"]),
        ("split: edit, first run (incl. lazy start-up)", res["first_edit_s"]),
        ("split: edit again (network)", res["network_s"]),
    ]
    return [
        f"**Cold start** (`{res['command']}` as a new process, {res['device']}, median of "
        f"{res['repeats']}; goal: wall ≤ {res['goal']} × (python + torch import + network) = "
        f"{res['goal_s']:.2f} s).",
        "",
        "| phase | seconds |",
        "|---|---:|",
        *(f"| {name} | {s:.3f} |" for name, s in parts),
        f"| **the command, wall** | **{res['command_s']:.3f}** |",
        "",
        f"Wall ÷ (python + torch import + network = {res['floor_s']:.2f} s): {res['ratio']:.2f}, "
        f"goal ≤ {res['goal']}: {verdict(res['ratio'], res['goal'])}.",
    ]


def contention_table(res: dict[str, Any], verdict: Any) -> list[str]:
    """The contention cases as markdown lines, the policy's row with its verdict."""
    lines = [
        f"**Contention** (forward pass of the bundled model, batch 2, 28², median of "
        f"{res['reps']} in {res['rounds']} alternating blocks, alone and beside one busy "
        f"process; goal for "
        f"nidiff's policy: busy ÷ idle ≤ {res['goal']}).",
        "",
        "| environment | variables | threads | idle ms | busy ms | busy ÷ idle | verdict |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in res["rows"]:
        env = " ".join(f"{k}={v}" for k, v in r["env"].items()) or "–"
        judged = verdict(r["ratio"], res["goal"]) if r["case"] == "nidiff policy" else "–"
        lines.append(
            f"| {r['case']} | {env} | {r['threads']} | {r['idle_ms']:.1f} | {r['busy_ms']:.1f} "
            f"| {r['ratio']:.2f} | {judged} |"
        )
    return lines
