"""``nidiff train`` after a kill: the record keeps every segment, stale temporaries go, and a
truncated or foreign ``train_state.pt`` falls back to the checkpoint before it (or exit 2)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("accelerate")
pytest.importorskip("sklearn")

import torch
from cli_calls import bad, ok

TINY = ["--noise", "gff", "--data", "digits", "--channels", "8,16", "--batch-size", "4",
        "--warmup", "1", "--checkpoint-every", "3"]  # fmt: skip


def _killed_after_last_checkpoint(out: Path) -> None:
    """What ``kill -9`` between the last checkpoint and the export leaves: no model, no record,
    and the temporaries of a checkpoint and a model file being written (an hour old)."""
    for done in ("model", "train.json", "train_log.json"):
        shutil.rmtree(out / done, ignore_errors=True)
        (out / done).unlink(missing_ok=True)
    half_ckpt = out / "checkpoints" / ".step-0000009.k1ll3d00.tmp"
    half_ckpt.mkdir()
    (half_ckpt / "train_state.pt").write_bytes(b"PK")
    (out / "model").mkdir()
    half_model = out / "model" / ".model.safetensors.k1ll3d00.tmp"
    half_model.write_bytes(b"")
    hour_ago = time.time() - 3600
    for p in (half_ckpt, half_model):
        os.utime(p, (hour_ago, hour_ago))


class Payload:
    """Unpickling this would create ``marker``: a foreign file must never be unpickled freely."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_killed_run_resumes_with_its_segments_and_falls_back_past_bad_states(tmp_path):
    out = tmp_path / "run"
    ok("train", out, *TINY, "--steps", "6")
    _killed_after_last_checkpoint(out)
    ok("train", out, *TINY, "--steps", "8", "--resume")
    assert not list((out / "checkpoints").glob(".*.tmp")) and not list(
        (out / "model").glob(".*.tmp")
    )
    rec = json.loads((out / "train.json").read_text())
    assert rec["resumed_from"] == "step-0000006"
    assert [(s["start_step"], s["end_step"]) for s in rec["segments"]] == [(0, 6), (6, 8)]
    assert all(s["seconds"] > 0 for s in rec["segments"])
    assert rec["train_seconds"] == pytest.approx(sum(s["seconds"] for s in rec["segments"]))

    # the newest checkpoint (step 8) truncated: resume from step 6, with one warning line
    state = out / "checkpoints" / "step-0000008" / "train_state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    result = ok("train", out, *TINY, "--steps", "9", "--resume")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning")]
    assert len(warnings) == 1 and "step-0000008" in warnings[0], result.stderr
    rec = json.loads((out / "train.json").read_text())
    assert rec["resumed_from"] == "step-0000006" and rec["step"] == 9
    assert [(s["start_step"], s["end_step"]) for s in rec["segments"]] == [(0, 6), (6, 9)]

    # every checkpoint foreign (a pickle that would run code): exit 2, nothing unpickled
    marker = tmp_path / "unpickled"
    for ckpt in (out / "checkpoints").glob("step-*"):
        torch.save({"model": Payload(marker)}, ckpt / "train_state.pt")
    err = bad("train", out, *TINY, "--steps", "12", "--resume", match="no checkpoint reads").stderr
    assert "to start over" in err and not marker.exists()
