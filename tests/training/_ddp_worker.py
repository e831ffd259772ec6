"""Worker of ``test_distributed``: trains the tiny digits model for a few steps.

Run under ``torchrun --nproc_per_node N _ddp_worker.py OUT_DIR`` (each process trains its shard of
the global batch) or call :func:`run` in-process for the single-process reference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from nidiff.data.digits import digits
from nidiff.training.spec import ProcessSpec
from nidiff.training.trainer import TrainConfig, TrainResult, train

# The tiny UNet every training test uses (one file, so the tests and the DDP worker agree).
TINY = json.loads(Path(__file__).with_name("tiny_unet.json").read_text())
# Edge-preserving noise: its σ_t depends on each image, so this also checks that sharding keeps
# every image's noise (per-image edge normalisation) and label dropout as in the global batch.
SPEC = ProcessSpec({"kind": "linear", "T": 1000}, {"kind": "edge"})
CFG = TrainConfig(
    steps=20, batch_size=8, lr=2e-3, warmup=5, log_every=5, checkpoint_every=20, seed=11
)


def run(out_dir: str | Path) -> TrainResult:
    images, labels = digits()
    return train(
        out_dir,
        images=images,
        labels=labels,
        model_config=TINY,
        spec=SPEC,
        cfg=CFG,
        progress=False,
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(sys.argv[1])
