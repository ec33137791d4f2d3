"""KID against a naive pairwise implementation (moved from test_fid.py with `alit_eval.metrics.kid`)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from alit_eval.metrics.kid import kernel_inception_distance


def _naive_kid(
    x: np.ndarray, y: np.ndarray, subsets: int, m: int, rng: np.random.Generator
) -> list[float]:
    """Pairwise loops; the same draws in the same order as the library (x then y per subset)."""
    d = x.shape[1]

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float((a @ b / d + 1) ** 3)

    out = []
    for _ in range(subsets):
        xs = x[rng.choice(len(x), m, replace=False)]
        ys = y[rng.choice(len(y), m, replace=False)]
        pairs = list(itertools.permutations(range(m), 2))
        kxx = sum(k(xs[i], xs[j]) for i, j in pairs) / len(pairs)
        kyy = sum(k(ys[i], ys[j]) for i, j in pairs) / len(pairs)
        kxy = sum(k(xs[i], ys[j]) for i in range(m) for j in range(m)) / (m * m)
        out.append(kxx + kyy - 2 * kxy)
    return out


def test_kid_matches_naive_pairwise_implementation() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(15, 6)), rng.normal(size=(12, 6)) + 0.7
    mean, std = kernel_inception_distance(
        x, y, num_subsets=5, subset_size=8, generator=np.random.default_rng(9)
    )
    want = _naive_kid(x, y, 5, 8, np.random.default_rng(9))
    assert mean == pytest.approx(np.mean(want), rel=1e-10)
    assert std == pytest.approx(np.std(want), rel=1e-8)
    # subset size above the set sizes is clipped to min(n1, n2) = 12
    clipped = kernel_inception_distance(
        x, y, num_subsets=3, subset_size=1000, generator=np.random.default_rng(5)
    )
    want = _naive_kid(x, y, 3, 12, np.random.default_rng(5))
    assert clipped[0] == pytest.approx(np.mean(want), rel=1e-10)
    # same distribution: near zero (the unbiased estimate can be negative), far below the shift
    x2 = rng.normal(size=(15, 6))
    same = kernel_inception_distance(
        x, x2, num_subsets=20, subset_size=12, generator=np.random.default_rng(0)
    )
    assert abs(same[0]) < 0.2 * mean and same[1] > 0
