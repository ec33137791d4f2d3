"""Small statistical helpers shared by the analyses (bootstrap confidence intervals)."""

from __future__ import annotations

import numpy as np


def bootstrap_mean_ci(
    values: np.ndarray, seed: int = 0, n_boot: int = 1000, level: float = 0.95, chunk: int = 100
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean.

    Resamples are drawn in chunks so memory stays ``chunk * n`` indices even for 50k images; the
    result depends only on (values, seed, n_boot, level).

    Returns:
        ``(low, high)``; NaNs when fewer than two finite values.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        means.append(v[rng.integers(0, v.size, size=(k, v.size))].mean(axis=1))
    m = np.concatenate(means)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(m, alpha)), float(np.quantile(m, 1.0 - alpha))
