"""Measure the bundled models: target accuracy and classifier-feature FID of their samples.

The exact script behind the model cards and the first RESULTS.md tables (kept for provenance);
the maintained benchmark is ``nidiff bench generation`` (adds precision/recall and presets).

    python scripts/eval_bundled.py OUT_DIR [--per-class 1000] [--sweep 1000,100,50,20,10]

Writes ``OUT_DIR/eval.json`` after every measurement (so a cut-off run keeps what it measured)
and a sample grid per model. Samples: class-conditional, guidance 3, 50 steps (DDIM η = 0 with
x̂0 clipped to [−1, 1] for isotropic/GFF; the EP posterior for edge-preserving). The step sweep
samples without guidance (w = 1).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from nidiff.bundled import MODELS, load_bundled, load_bundled_classifier
from nidiff.data.fashion_mnist import DEFAULT_DIR, load_fashion_mnist_tensors
from nidiff.data.transforms import from_uint8
from nidiff.generate import generate
from nidiff.imageio import save_grid
from nidiff.metrics.fid import frechet_distance
from nidiff.schedule import leading_grid


@torch.no_grad()
def features(clf, x: torch.Tensor, batch: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    feats, preds = [], []
    for i in range(0, len(x), batch):
        f = clf.features(x[i : i + batch])
        feats.append(f.cpu())
        preds.append(clf.head(f).argmax(1).cpu())
    return torch.cat(feats), torch.cat(preds)


def sample_model(m, labels, steps, guidance, device, seed, batch=2500):
    eta, clip = (1.0, None) if m.spec.kind == "edge" else (0.0, (-1.0, 1.0))
    rule = m.step_rule(eta, clip)
    out = []
    for i in range(0, len(labels), batch):
        g = torch.Generator(device).manual_seed(seed + i)
        out.append(
            generate(
                m.denoiser,
                rule,
                leading_grid(m.schedule, steps),
                (len(labels[i : i + batch]), 1, 28, 28),
                noise=m.noise,
                labels=labels[i : i + batch],
                guidance=guidance,
                null_class=m.null_class,
                generator=g,
                device=device,
            )
        )
    return torch.cat(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--root", type=Path, default=DEFAULT_DIR)
    p.add_argument("--per-class", type=int, default=1000)
    p.add_argument("--sweep", default="1000,100,50,20,10")
    p.add_argument("--sweep-per-class", type=int, default=200)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    clf = load_bundled_classifier(device)
    xt, yt = load_fashion_mnist_tensors(a.root, "test")
    real_f, real_pred = features(clf, from_uint8(xt)[:, None].to(device))
    xs, _ = load_fashion_mnist_tensors(a.root, "train")
    train_f, _ = features(clf, from_uint8(xs[:10000])[:, None].to(device))
    res = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "classifier_test_accuracy": float((real_pred == yt).float().mean()),
        "fid_train10k_vs_test": frechet_distance(train_f, real_f),
        "models": {},
    }
    save = lambda: (a.out / "eval.json").write_text(json.dumps(res, indent=2))  # noqa: E731
    save()
    for name in MODELS:
        m = load_bundled(name, device)
        labels = torch.arange(10).repeat_interleave(a.per_class)
        t0 = time.perf_counter()
        x = sample_model(m, labels, 50, 3.0, device, seed=0)
        secs = time.perf_counter() - t0
        f, pred = features(clf, x)
        r = {
            "n": len(labels),
            "steps": 50,
            "guidance": 3.0,
            "seconds": secs,
            "accuracy": float((pred == labels).float().mean()),
            "fid_vs_test": frechet_distance(f, real_f),
            "sweep": {},
        }
        res["models"][name] = r
        k = min(8, a.per_class)
        grid = x.view(10, a.per_class, 1, 28, 28)[:, :k].reshape(10 * k, 1, 28, 28)
        save_grid(grid.cpu(), a.out / f"{name}.png", nrow=k)
        save()
        for steps in (int(s) for s in a.sweep.split(",") if s):
            lab = torch.arange(10).repeat_interleave(a.sweep_per_class)
            t0 = time.perf_counter()
            x = sample_model(m, lab, steps, 1.0, device, seed=1)
            f, pred = features(clf, x)
            r["sweep"][str(steps)] = {
                "n": len(lab),
                "guidance": 1.0,
                "seconds": time.perf_counter() - t0,
                "accuracy": float((pred == lab).float().mean()),
                "fid_vs_test": frechet_distance(f, real_f),
            }
            save()
        print(name, json.dumps(r))


if __name__ == "__main__":
    main()
