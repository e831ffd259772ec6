r"""Improved precision and recall of a generated set by k-nearest-neighbour manifolds.

Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative
Models", §2. A set :math:`\Phi` of feature vectors spans the manifold
:math:`\bigcup_{\phi \in \Phi} B(\phi, r_k(\phi))`, where :math:`r_k(\phi)` is the distance from
:math:`\phi` to its k-th nearest neighbour in :math:`\Phi` (itself excluded). Then

* precision = fraction of fake samples inside the real manifold (are samples realistic?),
* recall = fraction of real samples inside the fake manifold (is the data covered?).

Distances are Euclidean, computed in float64 over row chunks of ``chunk_size`` queries, so
memory is ``O(chunk_size · N)`` rather than ``O(N²)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .kid import check_features

__all__ = ["PrecisionRecall", "knn_radii", "manifold_coverage", "precision_recall"]


class PrecisionRecall(NamedTuple):
    """Improved precision and recall, both in [0, 1]."""

    precision: float
    recall: float


def _sq_dists(q: Tensor, r: Tensor, r_sq: Tensor) -> Tensor:
    """Squared Euclidean distances ``(len(q), len(r))``, clamped at 0."""
    return ((q * q).sum(1, keepdim=True) + r_sq[None, :] - 2 * q @ r.T).clamp_min(0)


def _check_k(k: int, n: int, name: str) -> None:
    if not 1 <= k < n:
        raise ValueError(f"k={k} must lie in [1, N - 1] for {name} with N={n} rows")


def _check_chunk(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def knn_radii(feats: Tensor, k: int = 3, *, chunk_size: int = 1024) -> Tensor:
    """Distance ``(N,)`` from each row of ``feats`` ``(N, D)`` to its k-th nearest other row."""
    f = check_features(feats, "feats")
    _check_k(k, f.shape[0], "feats")
    _check_chunk(chunk_size)
    f_sq = (f * f).sum(1)
    out = []
    for i in range(0, f.shape[0], chunk_size):
        d2 = _sq_dists(f[i : i + chunk_size], f, f_sq)
        # k + 1 smallest: the row itself (distance 0) comes first.
        out.append(d2.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out).sqrt()


def _coverage(ref: Tensor, radii: Tensor, query: Tensor, chunk_size: int) -> float:
    ref_sq, r2 = (ref * ref).sum(1), radii.square()
    inside = []
    for i in range(0, query.shape[0], chunk_size):
        d2 = _sq_dists(query[i : i + chunk_size], ref, ref_sq)
        inside.append((d2 <= r2[None, :]).any(1))
    return float(torch.cat(inside).to(torch.float64).mean())


def manifold_coverage(
    ref_feats: Tensor, query_feats: Tensor, k: int = 3, *, chunk_size: int = 1024
) -> float:
    """Fraction of rows of ``query_feats`` in the k-NN manifold of ``ref_feats`` (``(·, D)``)."""
    ref = check_features(ref_feats, "ref_feats")
    query = check_features(query_feats, "query_feats", min_rows=1)
    if ref.shape[1] != query.shape[1]:
        raise ValueError(f"feature dims differ: {ref.shape[1]} vs {query.shape[1]}")
    radii = knn_radii(ref, k, chunk_size=chunk_size)
    return _coverage(ref, radii, query, chunk_size)


def precision_recall(
    real_feats: Tensor, fake_feats: Tensor, k: int = 3, *, chunk_size: int = 1024
) -> PrecisionRecall:
    """Improved precision and recall of ``fake_feats`` against ``real_feats`` (both ``(N_·, D)``).

    Args:
        k: neighbourhood size of the manifold radii (the paper uses 3); must be below both N.
        chunk_size: query rows per distance block (memory ``chunk_size · N`` float64 values).

    Returns:
        ``PrecisionRecall(precision, recall)``; identical sets give ``(1.0, 1.0)``.
    """
    real = check_features(real_feats, "real_feats")
    fake = check_features(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dims differ: {real.shape[1]} vs {fake.shape[1]}")
    _check_k(k, real.shape[0], "real_feats")
    _check_k(k, fake.shape[0], "fake_feats")
    precision = _coverage(real, knn_radii(real, k, chunk_size=chunk_size), fake, chunk_size)
    recall = _coverage(fake, knn_radii(fake, k, chunk_size=chunk_size), real, chunk_size)
    return PrecisionRecall(precision, recall)
