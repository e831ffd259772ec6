r"""Measurements of ``nidiff bench editing``: the edit region, per-image parts, table rows.

A *part* is what one (pair, method, setting) batch yields per image — classifier features,
whether the target class was hit, SSIM / PSNR to the source, the same outside the edit region,
per-input diversity — plus its cost (``nfe``, ``seconds`` and the ``batch`` they were spent
on). :func:`summary` turns the parts of one pair, or of all pairs pooled, into a table row:

* FID (:func:`~nidiff.metrics.frechet_distance`) and KID (:func:`~nidiff.metrics.kid`, mean
  over 100 subsets of size ``min(1000, n)``, seed 0) of the features vs the real target features;
* the means over images of target accuracy, SSIM, PSNR, bg PSNR, bg SSIM and diversity;
* seconds and NFE summed over the parts ÷ images edited (copies for diversity included).

PSNRs are capped at :data:`PSNR_CAP` dB so that identical images (MSE 0, PSNR ∞) average and
serialise. bg SSIM is ``None`` when a 7 × 7 window fits in no image's background.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nidiff.data.transforms import from_uint8
from nidiff.metrics import diversity, frechet_distance, kid, masked_psnr, masked_ssim, psnr, ssim

__all__ = [
    "METRICS",
    "PSNR_CAP",
    "REGION_THRESHOLD",
    "aggregate",
    "edit_region",
    "measure",
    "per_image",
    "reference",
    "summary",
]

REGION_THRESHOLD = 0.2
PSNR_CAP = 100.0
#: Row metrics, in table order.
METRICS = (
    "fid",
    "kid",
    "accuracy",
    "ssim",
    "psnr",
    "bg_psnr",
    "bg_ssim",
    "diversity",
    "seconds_per_image",
    "nfe_per_image",
)


def edit_region(
    train_x: Tensor, train_y: Tensor, source: int, target: int, threshold: float = REGION_THRESHOLD
) -> Tensor:
    """A pair's edit region ``(1, 1, H, W)``, 0/1 float: the pixels where the mean training
    images of ``source`` and ``target`` differ by more than ``threshold`` (images in [−1, 1]),
    dilated by 1 px (3 × 3 max). ``train_x`` ``(N, H, W)`` uint8, ``train_y`` ``(N,)``."""
    means = [from_uint8(train_x[train_y == c]).mean(0) for c in (source, target)]
    hit = ((means[0] - means[1]).abs() > threshold).float()[None, None]
    return F.max_pool2d(hit, 3, stride=1, padding=1)


def _classify(feats: Tensor, clf: Any, target: int) -> Tensor:
    return (clf.classes(feats) == target).double()


def measure(
    x: Tensor, x0: Tensor, region: Tensor, target: int, copies: int, k: int, feats, clf
) -> dict[str, Any]:
    """The parts of a batch ``x`` ``(n + copies·(k − 1), 1, H, W)`` in [−1, 1]: ``n`` edits of
    the sources ``x0`` ``(n, 1, H, W)`` (CPU), then ``k − 1`` blocks of extra edits of the
    first ``copies`` sources. ``feats`` maps images to classifier features, ``clf.classes``
    those to predicted classes."""
    n = len(x0)
    main = x[:n]
    f = feats(main)
    blocks = [x[:copies]] + [x[n + c * copies : n + (c + 1) * copies] for c in range(k - 1)]
    try:
        bg_ssim = masked_ssim(main, x0, region, sigma=None, window=7)
    except ValueError:  # no 7 x 7 window fits in the background of some image
        bg_ssim = None
    return {
        "feats": f,
        "correct": _classify(f, clf, target),
        "ssim": ssim(main, x0),
        "psnr": psnr(main, x0).clamp(max=PSNR_CAP),
        "bg_psnr": masked_psnr(main, x0, region).clamp(max=PSNR_CAP),
        "bg_ssim": bg_ssim,
        "diversity": diversity(torch.stack(blocks, 1)) if copies and k > 1 else None,
    }


def reference(kind: str, x: Tensor, target: int, feats, clf) -> dict[str, Any]:
    """Parts of a reference row: ``"source"`` (``x`` the unedited sources: fidelity perfect, no
    cost) or ``"target (train)"`` (``x`` real target images: no fidelity, cost or diversity)."""
    f = feats(x)
    same = kind == "source"
    ones = torch.ones(len(x), dtype=torch.float64)
    return {
        "feats": f,
        "correct": _classify(f, clf, target),
        "ssim": ones if same else None,
        "psnr": ones * PSNR_CAP if same else None,
        "bg_psnr": ones * PSNR_CAP if same else None,
        "bg_ssim": ones if same else None,
        "diversity": None,
        "nfe": 0 if same else None,
        "seconds": 0.0 if same else None,
        "batch": len(x),
    }


def summary(parts: list[dict[str, Any]], real: Tensor) -> dict[str, float | None]:
    """The :data:`METRICS` of one or several parts vs the real target features ``real``."""

    def mean(key: str) -> float | None:
        vals = [q[key] for q in parts]
        if any(v is None for v in vals):
            return None
        return float(torch.cat([v.reshape(-1) for v in vals]).double().mean())

    f = torch.cat([q["feats"] for q in parts])
    batch = sum(q["batch"] for q in parts)
    nfe = [q["nfe"] for q in parts]
    secs = [q["seconds"] for q in parts]
    return {
        "fid": frechet_distance(f, real),
        "kid": kid(f, real).mean,
        "accuracy": mean("correct"),
        "ssim": mean("ssim"),
        "psnr": mean("psnr"),
        "bg_psnr": mean("bg_psnr"),
        "bg_ssim": mean("bg_ssim"),
        "diversity": mean("diversity"),
        "seconds_per_image": None if None in secs else sum(secs) / batch,
        "nfe_per_image": None if None in nfe else sum(nfe) / batch,
    }


#: The per-image values a row may keep (``--set per_image=true``): the goal's metrics.
PER_IMAGE = {"accuracy": "correct", "ssim": "ssim", "bg_psnr": "bg_psnr"}


def per_image(parts: list[dict[str, Any]]) -> dict[str, list[float]]:
    """The per-image accuracy (0/1), SSIM and bg PSNR of ``parts``, in their order (for the
    bootstrap intervals of :mod:`~nidiff.bench._editing_compare`; 6 significant digits)."""
    out = {}
    for key, part_key in PER_IMAGE.items():
        v = torch.cat([q[part_key].reshape(-1) for q in parts]).double()
        out[key] = [float(f"{x:.6g}") for x in v.tolist()]
    return out


def aggregate(repeats: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Merge the rows of several repeats by (pair, method, setting): each metric becomes the mean
    over repeats with its sample standard deviation under ``row["std"]`` and the values of each
    repeat under ``row["repeats"]`` (groups of one row are kept as they are), ``seed`` the list
    of seeds, ``per_image`` (where kept) the repeats' values one after the other."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for rows in repeats:
        for r in rows:
            groups[(r["pair"], r["method"], r["setting"])].append(r)
    out = []
    for rs in groups.values():
        row = dict(rs[0])
        if len(rs) > 1:
            row["std"], row["seed"] = {}, [r["seed"] for r in rs]
            row["repeats"] = {key: [r[key] for r in rs] for key in METRICS}
            if "per_image" in row:
                kept = [r["per_image"] for r in rs]
                row["per_image"] = {k: [v for q in kept for v in q[k]] for k in PER_IMAGE}
            for key, vals in row["repeats"].items():
                if None not in vals:
                    v = torch.tensor(vals, dtype=torch.float64)
                    row[key], row["std"][key] = float(v.mean()), float(v.std())
        out.append(row)
    return out
