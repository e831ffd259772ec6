"""The OpenMP wait policy of nidiff's programs: the CLI, the benchmarks, the demo (and apps).

**Why.** PyTorch's CPU kernels run on an OpenMP thread pool (one thread per core) whose idle
threads *spin* for a while after each parallel region, waiting for the next one. On a machine
where another process keeps one core busy, that spinning occupies the other cores, the thread
that shares a core with the busy process gets a fraction of its time, and every parallel region
waits for it: a forward pass of the bundled model (batch 2, 28²) measured 20–30 ms on an idle
2-core machine and ~570 ms (up to 1.7 s) with one busy process beside it. With
``OMP_WAIT_POLICY=PASSIVE`` idle threads sleep instead, the scheduler moves work to the free
core, and the same pass measured ~30 ms beside the busy process (``nidiff bench speed``'s
contention table measures it on your machine).

**Policy.** Before torch is imported, set ``OMP_WAIT_POLICY=PASSIVE`` — unless the environment
already says how OpenMP threads wait (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or
``KMP_BLOCKTIME``): a variable the user set is never overridden. The number of threads is left
to PyTorch (all cores), so large CPU work keeps its parallel speed-up; passive waiting costs a
wake-up per parallel region instead (the 28² model's idle pass measured ~40–55 ms).
``OMP_NUM_THREADS=1`` is the faster choice for the small bundled models on a small machine.

Library code never calls this: importing :mod:`nidiff` changes nothing. Programs call
:func:`apply_thread_policy` first — ``nidiff.cli.main``, the :mod:`nidiff.bench` package (every
``python -m nidiff.bench.NAME``) and ``python -m nidiff.demo``; once torch is loaded the variables
no longer act, so then it changes nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

__all__ = ["APPLIED", "POLICY", "WAIT_VARIABLES", "apply_thread_policy", "thread_env"]

#: What the policy sets.
POLICY: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}
#: Variables by which a user already chose how OpenMP threads wait (libgomp, LLVM/Intel OpenMP).
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
#: The variables this process set (empty until :func:`apply_thread_policy` set something).
APPLIED: dict[str, str] = {}


def thread_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables the policy adds to ``environ``: :data:`POLICY`, or nothing when ``environ``
    sets any of :data:`WAIT_VARIABLES` (the user's own choice wins)."""
    if any(name in environ for name in WAIT_VARIABLES):
        return {}
    return dict(POLICY)


def apply_thread_policy(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Add :func:`thread_env` to ``environ`` (default ``os.environ``) if torch is not imported
    yet; returns what it set (also recorded in :data:`APPLIED` for ``os.environ``)."""
    if "torch" in sys.modules:
        return {}
    target = os.environ if environ is None else environ
    added = thread_env(target)
    target.update(added)
    if environ is None:
        APPLIED.update(added)
    return added
