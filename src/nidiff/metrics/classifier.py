"""The bundled Fashion-MNIST classifier: target-class accuracy and features for FID/KID.

A small VGG-style CNN on ``(B, 1, 28, 28)`` images in [−1, 1]. Its penultimate layer (256-d) is
the default feature space for nidiff's distribution metrics, since Inception weights cannot be
downloaded here; numbers computed with it compare methods with each other, not with papers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .._io import atomic_path, write_json

__all__ = [
    "FashionClassifier",
    "accuracy",
    "load_classifier",
    "save_classifier",
    "train_classifier",
]

FORMAT = "nidiff-classifier"


class FashionClassifier(nn.Module):
    """Two conv blocks (32, 64 channels) → 256-d features → ``num_classes`` logits."""

    def __init__(self, num_classes: int = 10, width: int = 32, features: int = 256):
        super().__init__()
        self.config = {"num_classes": num_classes, "width": width, "features": features}
        w = width

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )

        self.body = nn.Sequential(
            block(1, w),
            block(w, 2 * w),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * w * 16, features),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(features, num_classes))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations ``(B, features)`` of images ``(B, 1, H, W)`` in [−1, 1]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def classes(self, features: Tensor) -> Tensor:
        """Predicted classes ``(B,)`` on the CPU from :meth:`features` (on any device): the
        features computed once for FID/KID also give the target accuracy."""
        return self.head(features.to(next(self.parameters()).device)).argmax(1).cpu()


def train_classifier(
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int = 8,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> FashionClassifier:
    """Train with AdamW, one-cycle cosine learning rate and random shifts/flips."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = FashionClassifier().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    n = len(images)
    total = epochs * (n // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(n // batch_size):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            x = _augment(images[idx].float(), gen).to(device)
            loss = nn.functional.cross_entropy(model(x), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def _augment(x: Tensor, gen: torch.Generator) -> Tensor:
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    padded = nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
    h, w = x.shape[-2:]
    return padded[..., 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]


@torch.no_grad()
def accuracy(model: FashionClassifier, images: Tensor, labels: Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on ``images`` in [−1, 1]."""
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(images), batch):
        pred = model(images[i : i + batch].float().to(device)).argmax(1).cpu()
        correct += int((pred == labels[i : i + batch]).sum())
    return correct / len(images)


def save_classifier(model: FashionClassifier, directory: str | Path, info: dict) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "classifier.safetensors") as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            str(tmp),
            metadata={"format": FORMAT},
        )
    write_json(directory / "classifier.json", {"format": FORMAT, "arch": model.config, **info})


def load_classifier(directory: str | Path, device: str | torch.device = "cpu") -> FashionClassifier:
    directory = Path(directory)
    cfg_path, w_path = directory / "classifier.json", directory / "classifier.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise FileNotFoundError(f"{directory} holds no classifier.json/classifier.safetensors")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{cfg_path} is not a nidiff classifier")
    model = FashionClassifier(**cfg["arch"])
    model.load_state_dict(load_file(str(w_path)))
    return model.to(device).eval()
