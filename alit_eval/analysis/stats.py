"""The percentile bootstrap shared by the analyses: resample indices, take the percentile interval.

Every bootstrap in the package draws its resamples from `bootstrap_indices` (one
``numpy.random.default_rng(seed)``, chunked so memory stays ``chunk * n`` indices even for 50k
images) and reads its interval with `percentile_ci`, so a result depends only on (data, seed,
n_boot, level).
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

BOOT_CHUNK = 100  # resamples drawn at once: memory is BOOT_CHUNK * n indices


def bootstrap_indices(n: int, n_boot: int, seed: int, chunk: int = BOOT_CHUNK) -> Iterator[np.ndarray]:
    """Resample indices ``[k, n]`` (k <= chunk), `n_boot` rows in total, from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, chunk):
        yield rng.integers(0, n, size=(min(chunk, n_boot - start), n))


def percentile_ci(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite bootstrap replicates (NaNs when fewer than two)."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 2:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(r, alpha)), float(np.quantile(r, 1.0 - alpha))


def bootstrap_mean_ci(
    values: np.ndarray, seed: int = 0, n_boot: int = 1000, level: float = 0.95, chunk: int = BOOT_CHUNK
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of the finite `values`.

    Returns:
        ``(low, high)``; NaNs when fewer than two finite values.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return float("nan"), float("nan")
    means = [v[idx].mean(axis=1) for idx in bootstrap_indices(v.size, n_boot, seed, chunk)]
    return percentile_ci(np.concatenate(means), level)


def bootstrap_ci(stat: Callable[..., float], arrays: Sequence[np.ndarray], *, seed: int, n_boot: int = 1000,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat(*arrays)``, resampling rows of all arrays jointly; NaNs if < 2 rows.

    One resample per draw (``chunk=1``): `stat` takes one resample at a time.
    """
    n = len(arrays[0])
    if n < 2:
        return float("nan"), float("nan")
    vals = [stat(*(a[idx[0]] for a in arrays)) for idx in bootstrap_indices(n, n_boot, seed, chunk=1)]
    return percentile_ci(np.array(vals, dtype=np.float64), level)
