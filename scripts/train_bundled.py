"""Train one of nidiff's bundled Fashion-MNIST models (the command behind each model card).

    python scripts/train_bundled.py isotropic OUT_DIR --steps 20000 --batch-size 128
    python scripts/train_bundled.py classifier OUT_DIR --epochs 12

Runs on a GPU when one is present (TF32 matmuls), otherwise on the CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from nidiff.data.fashion_mnist import DEFAULT_DIR, load_fashion_mnist_tensors
from nidiff.data.transforms import from_uint8
from nidiff.metrics.classifier import accuracy, save_classifier, train_classifier
from nidiff.training.fashion import train_fashion
from nidiff.training.trainer import TrainConfig


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("kind", choices=["isotropic", "gff", "edge", "classifier"])
    p.add_argument("out", type=Path)
    p.add_argument("--root", type=Path, default=DEFAULT_DIR)
    p.add_argument("--steps", type=int, default=1300)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-every", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=2000)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device = "cuda" if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()
    if a.kind == "classifier":
        xs, ys = load_fashion_mnist_tensors(a.root, "train")
        xt, yt = load_fashion_mnist_tensors(a.root, "test")
        model = train_classifier(
            from_uint8(xs)[:, None], ys, epochs=a.epochs, seed=a.seed, device=device
        )
        acc = accuracy(model, from_uint8(xt)[:, None], yt)
        info = {
            "test_accuracy": acc,
            "epochs": a.epochs,
            "seed": a.seed,
            "hardware": hardware(),
            "seconds": time.perf_counter() - start,
        }
        save_classifier(model, a.out, info)
        print(json.dumps(info))
        return
    cfg = TrainConfig(
        steps=a.steps,
        batch_size=a.batch_size,
        lr=a.lr,
        warmup=a.warmup,
        ema_decay=a.ema_decay,
        seed=a.seed,
        sample_every=a.sample_every,
        checkpoint_every=a.checkpoint_every,
    )
    res = train_fashion(a.out, a.kind, cfg, root=a.root, resume=a.resume)
    info = {
        "kind": a.kind,
        "steps": res.step,
        "seconds": res.seconds,
        "hardware": hardware(),
        "final_loss": res.losses[-1] if res.losses else None,
    }
    (a.out / "run.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
