"""The cold-start and contention parts of ``nidiff bench speed``: their environments, tables and
verdicts on fake results, and one small real run of each (fresh processes; ratios printed, not
asserted: they depend on the machine's load)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from speed_results import fake_result

from nidiff import _threads
from nidiff.bench import _startup, speed


def _cold(command_s: float) -> dict:
    split = {
        "python_s": 0.05, "python_torch_s": 1.55, "torch_import_s": 1.3, "other_imports_s": 0.1,
        "load_s": 0.2, "first_edit_s": 0.2, "network_s": 0.15,
    }  # fmt: skip
    return {
        "command": "nidiff edit sneaker-0.png …", "device": "cpu", "repeats": 3, **split,
        "command_s": command_s, "floor_s": 1.7, "goal_s": 3.4, "ratio": command_s / 1.7,
        "goal": 2.0, "rounds": [],
    }  # fmt: skip


def _busy(policy_ratio: float) -> dict:
    def row(case: str, ratio: float, env: dict) -> dict:
        return {"case": case, "env": env, "threads": 2, "idle_ms": 40.0,
                "busy_ms": 40.0 * ratio, "ratio": ratio}  # fmt: skip

    return {"warmup": 3, "reps": 20, "rounds": 4, "goal": 1.5, "rows": [
        row("torch default", 20.0, {}),
        row("nidiff policy", policy_ratio, {"OMP_WAIT_POLICY": "PASSIVE"}),
        row("1 thread", 1.1, {"OMP_NUM_THREADS": "1"}),
    ]}  # fmt: skip


def test_case_envs_build_on_the_users_environment(monkeypatch):
    base = {"PATH": "/bin", "OMP_NUM_THREADS": "4"}
    assert _startup.case_env("torch default", base) == base
    assert _startup.case_env("nidiff policy", base) == {**base, "OMP_WAIT_POLICY": "PASSIVE"}
    assert _startup.case_env("1 thread", base) == {**base, "OMP_NUM_THREADS": "1"}
    own = {**base, "OMP_WAIT_POLICY": "ACTIVE"}  # the user's own choice stays in every case
    assert _startup.case_env("nidiff policy", own) == own
    with pytest.raises(ValueError, match="unknown contention case 'x'"):
        _startup.case_env("x", base)
    # what this process's policy added is not the user's: the default case drops it
    monkeypatch.setattr(_threads, "APPLIED", {"OMP_WAIT_POLICY": "PASSIVE"})
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert "OMP_WAIT_POLICY" not in _startup.case_env("torch default")
    assert _startup.case_env("nidiff policy")["OMP_WAIT_POLICY"] == "PASSIVE"


@pytest.mark.parametrize(("command_s", "policy_ratio", "passes"), [(3.4, 1.5, 2), (3.5, 1.51, 0)])
def test_speed_report_has_the_two_tables_with_verdicts(command_s, policy_ratio, passes):
    result = {**fake_result(), "cold_start": _cold(command_s), "contention": _busy(policy_ratio)}
    result["seconds"] = {**result["seconds"], "cold_start": 20.0, "contention": 30.0}
    lines = speed.markdown(result).splitlines()
    verdict = "PASS" if passes else "FAIL"
    assert f"| **the command, wall** | **{command_s:.3f}** |" in lines
    assert f"Wall ÷ (python + torch import + network = 1.70 s): {command_s / 1.7:.2f}, " \
           f"goal ≤ 2.0: {verdict}." in lines  # fmt: skip
    assert '| python + torch import (`python -c "import torch"`, wall) | 1.550 |' in lines
    assert "| split: edit again (network) | 0.150 |" in lines
    assert "| torch default | – | 2 | 40.0 | 800.0 | 20.00 | – |" in lines
    assert (f"| nidiff policy | OMP_WAIT_POLICY=PASSIVE | 2 | 40.0 | {40 * policy_ratio:.1f} "
            f"| {policy_ratio:.2f} | {verdict} |") in lines  # fmt: skip
    assert (
        lines[-1] == f"Verdicts (measured ratio ≤ goal): {3 + passes} PASS, {5 - passes} FAIL of 9."
    )
    assert "cold start 20 s, contention 30 s" in lines[0]


def test_contention_runs_a_case_in_a_fresh_process():
    res = _startup.contention(("nidiff policy",), warmup=0, reps=2, rounds=2)
    json.dumps(res)
    (row,) = res["rows"]
    print(f"forward pass: idle {row['idle_ms']:.1f} ms, busy {row['busy_ms']:.1f} ms")
    assert row["case"] == "nidiff policy" and row["threads"] >= 1
    assert row["env"].get("OMP_WAIT_POLICY") == _startup.case_env("nidiff policy").get(
        "OMP_WAIT_POLICY"
    )
    assert row["ratio"] == pytest.approx(row["busy_ms"] / row["idle_ms"])
    with pytest.raises(ValueError, match="reps=0"):
        _startup.contention(reps=0)
    with pytest.raises(ValueError, match="rounds=3"):
        _startup.contention(reps=2, rounds=3)


def test_cold_start_runs_the_command_and_its_split():
    res = _startup.cold_start(1)
    json.dumps(res)
    print(json.dumps({k: v for k, v in res.items() if k != "rounds"}, indent=1))
    keys = ("python_s", "python_torch_s", "torch_import_s", "other_imports_s", "load_s",
            "first_edit_s", "network_s", "command_s")  # fmt: skip
    assert all(math.isfinite(res[k]) and res[k] > 0 for k in keys), res
    floor = res["python_torch_s"] + res["network_s"]
    assert res["floor_s"] == pytest.approx(floor) and res["ratio"] == pytest.approx(
        res["command_s"] / floor
    )
    assert res["goal_s"] == pytest.approx(2 * floor) and len(res["rounds"]) == 1
    with pytest.raises(ValueError, match="repeats=0"):
        _startup.cold_start(0)


def test_a_run_of_some_parts_reports_only_those(tmp_path):
    result = {key: fake_result()[key] for key in ("preset", "device", "hardware", "torch",
                                                  "threads")}  # fmt: skip
    result.update(cold_start=_cold(3.0), contention=_busy(1.2))
    result["seconds"] = {"cold_start": 20.0, "contention": 30.0, "total": 50.0}
    lines = speed.markdown(result).splitlines()
    assert sum(line.startswith("|---") for line in lines) == 2
    assert lines[-1] == "Verdicts (measured ratio ≤ goal): 2 PASS, 0 FAIL of 2."
    assert speed.plot(result, tmp_path) == []  # these two parts are tables only


@pytest.mark.parametrize("parts", [("nope",), ()])
def test_unknown_parts_are_refused_before_anything_runs(parts):
    with pytest.raises(ValueError, match="must be some of"):
        speed.run(preset=dataclasses.replace(speed.PRESETS["quick"], parts=parts))
