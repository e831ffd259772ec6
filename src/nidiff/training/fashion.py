"""The recipe behind nidiff's bundled Fashion-MNIST models (isotropic, GFF, edge-preserving).

All three share the network (a 2.7 M-parameter diffusers ``UNet2DModel``: channels 32/64/128,
attention at 7×7, 10 classes + a null class), the linear 1000-step schedule, the optimiser and
the budget, so that they differ only in the noise process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.fashion_mnist import CLASS_NAMES, DEFAULT_DIR, load_fashion_mnist_tensors
from ..data.transforms import from_uint8
from ..models.diffusers_unet import fashion_unet_config
from .spec import ProcessSpec
from .trainer import TrainConfig, TrainResult, train

__all__ = ["FASHION_PROCESSES", "train_fashion"]

#: The noise processes of the bundled models (EP: the paper's pixel-space λ and linear τ).
FASHION_PROCESSES: dict[str, dict[str, Any]] = {
    "isotropic": {"kind": "isotropic"},
    "gff": {"kind": "gff", "power": 1.0},
    "edge": {"kind": "edge", "lambda_min": 1e-4, "lambda_max": 1e-1, "tau": "linear", "t_phi": 0.5},
}


def train_fashion(
    out_dir: str | Path,
    kind: str = "isotropic",
    cfg: TrainConfig | None = None,
    *,
    root: str | Path = DEFAULT_DIR,
    resume: bool = False,
    progress: bool = True,
    **model_kw: Any,
) -> TrainResult:
    """Train a class-conditional Fashion-MNIST model with the noise process ``kind``."""
    cfg = cfg if cfg is not None else TrainConfig()
    if kind not in FASHION_PROCESSES:
        raise ValueError(f"unknown kind {kind!r}; use one of {list(FASHION_PROCESSES)}")
    images, labels = load_fashion_mnist_tensors(root, "train")
    spec = ProcessSpec(schedule={"kind": "linear", "T": 1000}, noise=FASHION_PROCESSES[kind])
    return train(
        out_dir,
        images=from_uint8(images)[:, None],
        labels=labels,
        model_config=fashion_unet_config(**model_kw),
        spec=spec,
        cfg=cfg,
        resume=resume,
        extra_config={
            "class_names": list(CLASS_NAMES),
            "data": {"name": "fashion-mnist", "split": "train", "size": 28},
        },
        progress=progress,
    )
