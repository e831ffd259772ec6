"""Batch mode under torchrun: two CPU processes shard the CSV rows and together write them all."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nidiff.bundled import ASSETS


def test_two_processes_shard_a_csv(tmp_path: Path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this python")
    rows = [
        ("sneaker-0.png", "sneaker", "sandal"),
        ("shirt-0.png", "shirt", "t-shirt"),
        ("pullover-0.png", "pullover", "coat"),
    ]
    for name, _, _ in rows:
        shutil.copy(ASSETS / "examples" / name, tmp_path / name)
    csv = tmp_path / "rows.csv"
    csv.write_text("image,source,target\n" + "".join(f"{n},{s},{t}\n" for n, s, t in rows))
    out = tmp_path / "edits"
    nidiff = [sys.executable, "-m", "nidiff.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "--no-python",
        *nidiff,
        "edit",
        str(csv),
        "--method",
        "sdedit",
        "--steps",
        "2",
        "--out",
        str(out),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0 and ("socket" in r.stderr.lower() or "rendezvous" in r.stderr.lower()):
        pytest.skip(f"torchrun could not start here: {r.stderr[-300:]}")
    assert r.returncode == 0, r.stderr[-3000:]
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 3, pngs
    records = [json.loads(p.read_text()) for p in out.glob("*.json")]
    ranks = {rec["row"]["rank"] for rec in records}
    assert len(records) == 3 and ranks == {0, 1}, records
