"""Crash safety, measured (issue 18): ``kill -9`` a training run and a batch edit at random
moments, resume, and check the result every time.

* **train**: ``nidiff train --data digits`` with a checkpoint every few steps is killed after a
  random delay (often during a checkpoint write), then resumed with ``--resume`` to the end; a
  trial survives when the resumed run exits 0, its model loads, ``train.json`` records the
  steps, and no temporary file is left in the folder.
* **batch edit**: ``nidiff edit FOLDER --method sdedit`` over a folder of images is killed, then
  re-run; a trial survives when every row's output and record exist exactly once, each output is
  a readable image, and no temporary file is left.

Run: ``OMP_NUM_THREADS=1 python scripts/kill_resume.py --trials 20`` (prints the counts).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

NIDIFF = [sys.executable, "-m", "nidiff.cli"]
SNEAKER = Path(__file__).resolve().parents[1] / "src/nidiff/assets/examples/sneaker-0.png"


def temporaries(folder: Path) -> list[Path]:
    """Files and folders named like nidiff's atomic-write temporaries."""
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.suffixes]


def kill_after(cmd: list[str], delay: float) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def train_trial(work: Path, rng: random.Random, steps: int) -> tuple[bool, str]:
    out = work / "run"
    cmd = [*NIDIFF, "train", str(out), "--noise", "isotropic", "--data", "digits",
           "--steps", str(steps), "--batch-size", "16", "--checkpoint-every", "3",
           "--warmup", "0"]  # fmt: skip
    kill_after(cmd, rng.uniform(2.0, 12.0))
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    if done.returncode != 0:
        return False, f"resume exit {done.returncode}: {done.stderr[-300:]}"
    from nidiff.training.checkpoint import load_model

    try:
        load_model(out / "model")
        record = json.loads((out / "train.json").read_text())
    except Exception as err:  # a trial fails on anything unreadable
        return False, f"unreadable result: {err}"
    if record.get("step", steps) != steps and record.get("steps", steps) != steps:
        return False, f"train.json says {record.get('step')} steps"
    left = temporaries(out)
    return (not left, f"temporaries left: {left[:3]}") if left else (True, "")


def batch_trial(work: Path, rng: random.Random, rows: int) -> tuple[bool, str]:
    images = work / "images"
    if not images.exists():
        images.mkdir()
        for i in range(rows):
            shutil.copy(SNEAKER, images / f"img{i:02d}.png")
    out = work / "edits"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*NIDIFF, "edit", str(images), "-s", "sneaker", "-t", "sandal", "--method", "sdedit",
           "--steps", "4", "--out", str(out)]  # fmt: skip
    kill_after(cmd, rng.uniform(1.5, 6.0))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return False, f"re-run exit {done.returncode}: {done.stderr[-300:]}"
    pngs = sorted(p for p in out.glob("*.png"))
    records = sorted(out.glob("*.png.json"))
    if len(pngs) != rows or len(records) != rows:
        return False, f"{len(pngs)} outputs and {len(records)} records for {rows} rows"
    for p in pngs:
        with Image.open(p) as img:
            img.verify()
    left = temporaries(out)
    return (not left, f"temporaries left: {left[:3]}") if left else (True, "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for name, trial, size in (("train", train_trial, 30), ("batch edit", batch_trial, 8)):
        survived, notes = 0, []
        for i in range(args.trials):
            with tempfile.TemporaryDirectory() as tmp:
                ok, why = trial(Path(tmp), rng, size)
            survived += ok
            if not ok:
                notes.append(f"trial {i}: {why}")
        print(f"{name}: kill-resume trials survived: {survived} of {args.trials}")
        for note in notes:
            print("  " + note)


if __name__ == "__main__":
    main()
