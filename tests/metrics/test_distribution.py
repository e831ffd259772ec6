"""FID and KID on Gaussian features; KID's unbiased estimator; precision and recall manifolds."""

from __future__ import annotations

import itertools

import pytest
import torch

from nidiff.metrics import (
    KID,
    frechet_distance,
    kid,
    knn_radii,
    manifold_coverage,
    mmd2_unbiased,
    polynomial_kernel,
    precision_recall,
)


def _gauss(n, d=8, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def test_fid_kid_of_a_set_with_itself_is_zero_and_grow_with_mean_shift():
    a = _gauss(400)
    assert abs(frechet_distance(a, a)) < 1e-8
    k0 = kid(a, a, subsets=20, subset_size=200)
    fids = [frechet_distance(a, _gauss(400, seed=1, shift=s)) for s in (0.0, 0.5, 1.0, 2.0)]
    kids = [
        kid(a, _gauss(400, seed=1, shift=s), subsets=20, subset_size=200).mean
        for s in (0.0, 0.5, 1.0, 2.0)
    ]
    assert all(x < y for x, y in itertools.pairwise(fids))
    assert all(x < y for x, y in itertools.pairwise(kids))
    assert abs(k0.mean) < 0.05 * kids[1]
    # FID of a pure mean shift: ||Δμ||² = d · s² on top of the sampling noise of fids[0].
    assert fids[3] - fids[0] == pytest.approx(8 * 4.0, rel=0.1)


def _mmd2_loops(a, b):
    """The unbiased estimator written as explicit sums over pairs."""
    D = a.shape[1]

    def k(x, y):
        return (float(x @ y) / D + 1) ** 3

    m, n = len(a), len(b)
    saa = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sbb = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sab = sum(k(a[i], b[j]) for i in range(m) for j in range(n)) / (m * n)
    return saa + sbb - 2 * sab


def test_mmd2_matches_the_pairwise_sums():
    a, b = _gauss(7, d=3, seed=2), _gauss(5, d=3, seed=3, shift=0.3)
    assert mmd2_unbiased(a, b) == pytest.approx(_mmd2_loops(a, b), rel=1e-10, abs=1e-12)
    assert polynomial_kernel(a, b).shape == (7, 5)


def test_kid_is_unbiased_where_the_biased_estimator_is_not():
    # Two independent samples of one Gaussian: the subset estimates average to 0 within their
    # standard error, while the V-statistic (diagonal kept) is clearly positive.
    a, b = _gauss(4000, d=4, seed=4), _gauss(4000, d=4, seed=5)
    res = kid(a, b, subsets=200, subset_size=20, generator=torch.Generator().manual_seed(1))
    assert isinstance(res, KID)
    sem = res.std / 200**0.5
    assert abs(res.mean) < 4 * sem
    g = torch.Generator().manual_seed(1)
    biased = []
    for _ in range(200):
        x = a[torch.randperm(4000, generator=g)[:20]]
        y = b[torch.randperm(4000, generator=g)[:20]]
        biased.append(
            float(
                polynomial_kernel(x, x).mean()
                + polynomial_kernel(y, y).mean()
                - 2 * polynomial_kernel(x, y).mean()
            )
        )
    assert sum(biased) / 200 > 4 * sem


def test_kid_is_reproducible_and_uses_the_generator():
    a, b = _gauss(100, seed=6), _gauss(100, seed=7, shift=0.2)
    assert kid(a, b, subsets=5, subset_size=50) == kid(a, b, subsets=5, subset_size=50)
    r1 = kid(a, b, subsets=5, subset_size=50, generator=torch.Generator().manual_seed(3))
    r2 = kid(a, b, subsets=5, subset_size=50, generator=torch.Generator().manual_seed(4))
    assert r1 != r2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subset_size": 200}, "subset_size"),
        ({"subset_size": 1}, "subset_size"),
        ({"subsets": 0}, "subsets"),
    ],
)
def test_kid_rejects_bad_subsets(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kid(_gauss(100), _gauss(100, seed=1), **kwargs)


def test_feature_validation():
    with pytest.raises(ValueError, match="dims differ"):
        kid(_gauss(10, d=3), _gauss(10, d=4))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        precision_recall(torch.zeros(10), torch.zeros(10))
    bad = _gauss(10)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        kid(bad, _gauss(10))


def test_precision_recall_identical_sets():
    a = _gauss(300, d=5)
    assert precision_recall(a, a.clone(), k=3) == (1.0, 1.0)


def test_precision_recall_far_apart_sets():
    a = _gauss(200, d=5)
    assert precision_recall(a, _gauss(150, d=5, seed=1, shift=100.0)) == (0.0, 0.0)


def test_precision_recall_of_a_mode_dropping_subset():
    # Real data has two far-apart clusters; the fake set is part of one of them.
    real = torch.cat([_gauss(200, d=2, seed=8), _gauss(200, d=2, seed=9, shift=50.0)])
    fake = real[:120]
    p, r = precision_recall(real, fake, k=3)
    assert p == 1.0
    assert r < 0.55
    assert r > 0.2  # the covered cluster is recalled


def test_chunking_does_not_change_the_result():
    real, fake = _gauss(97, d=4, seed=10), _gauss(83, d=4, seed=11, shift=0.5)
    full = precision_recall(real, fake, k=4, chunk_size=10_000)
    assert precision_recall(real, fake, k=4, chunk_size=7) == full
    assert 0 < full.precision < 1 and 0 < full.recall < 1
    assert manifold_coverage(real, fake, 4, chunk_size=5) == full.precision


def test_knn_radii_against_a_brute_force_sort():
    f = _gauss(30, d=3, seed=12)
    d = torch.cdist(f, f)
    expected = d.sort(1).values[:, 3]  # column 0 is the point itself
    torch.testing.assert_close(knn_radii(f, 3, chunk_size=4), expected, rtol=1e-9, atol=1e-9)


def test_precision_recall_rejects_bad_k():
    with pytest.raises(ValueError, match="k=5"):
        precision_recall(_gauss(5), _gauss(10), k=5)
    with pytest.raises(ValueError, match="k=0"):
        precision_recall(_gauss(10), _gauss(10), k=0)
