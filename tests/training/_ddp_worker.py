"""Worker of ``test_distributed``: trains the tiny digits model for a few steps.

Run under ``torchrun --nproc_per_node N _ddp_worker.py OUT_DIR`` (each process trains its shard of
the global batch) or call :func:`run` in-process for the single-process reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from nidiff.data.digits import digits
from nidiff.training.spec import ProcessSpec
from nidiff.training.trainer import TrainConfig, TrainResult, train

TINY = {
    "_class_name": "UNet2DModel",
    "sample_size": 8,
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": [16, 32],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
    "num_class_embeds": 11,
}
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
