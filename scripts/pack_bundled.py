"""Copy trained models into ``src/nidiff/assets`` as float16 safetensors (halves the size).

    python scripts/pack_bundled.py RUN_DIR   # RUN_DIR holds isotropic/ gff/ edge/ classifier/

Weights are trained and averaged (EMA) in float32; only the stored copy is float16. The loader
casts them back to the requested dtype.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from nidiff.training.checkpoint import read_config, save_model

ASSETS = Path(__file__).resolve().parents[1] / "src" / "nidiff" / "assets"


def main(run: Path) -> None:
    for kind in ("isotropic", "gff", "edge"):
        src = run / kind
        config = read_config(src)
        config["train"]["run"] = json.loads((src / "run.json").read_text())
        config["storage_dtype"] = "float16"
        state = {
            k: v.to(torch.float16) for k, v in load_file(str(src / "model.safetensors")).items()
        }
        dst = ASSETS / "models" / f"fashion-{kind}"
        save_model(dst, state, config)
        shutil.copy(src / "train_log.json", dst / "train_log.json")
    dst = ASSETS / "classifier"
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("classifier.json", "classifier.safetensors"):
        shutil.copy(run / "classifier" / name, dst / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
