"""Kernel Inception Distance from features (Binkowski et al. 2018), torch-fidelity's definition.

Pure functions, no networks; the FID counterpart is `alit_eval.metrics.feature_distance`.
"""

from __future__ import annotations

import numpy as np
import torch

from alit_eval.errors import AlitEvalError


def _mmd2_unbiased_poly(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel ``(x.y / D + 1)^3`` (KID's kernel)."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1.0) ** 3
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    off_xx = k_xx.sum() - np.trace(k_xx)
    off_yy = k_yy.sum() - np.trace(k_yy)
    return float((off_xx + off_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def _as_float64(f: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(f, torch.Tensor):
        f = f.detach().cpu().numpy()
    return np.asarray(f, dtype=np.float64)


def kernel_inception_distance(
    f1: np.ndarray | torch.Tensor,
    f2: np.ndarray | torch.Tensor,
    num_subsets: int = 100,
    subset_size: int = 1000,
    generator: np.random.Generator | None = None,
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018), torch-fidelity's definition.

    For each of `num_subsets` draws, pick `subset_size` rows of each set without replacement and
    compute the unbiased MMD^2 with kernel ``k(x, y) = (x.y / D + 1)^3``; report the mean and the
    (population, ddof=0) standard deviation over draws. Unlike torch-fidelity, a subset size above
    the set sizes is clipped to ``min(n1, n2)`` instead of raising.

    Args:
        f1: ``[n1, D]`` features of set 1.
        f2: ``[n2, D]`` features of set 2.
        num_subsets: number of random subsets.
        subset_size: rows per subset (clipped to ``min(n1, n2)``; at least 2 needed).
        generator: the random source for the draws; None means ``np.random.default_rng(0)``.

    Returns:
        ``(mean, std)`` of the MMD^2 estimates.
    """
    x, y = _as_float64(f1), _as_float64(f2)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"KID needs two [n, D] feature sets of one D, got {x.shape} and {y.shape}")
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise AlitEvalError(
            f"KID needs at least 2 images per set, got {x.shape[0]} and {y.shape[0]}"
        )
    rng = generator if generator is not None else np.random.default_rng(0)
    mmds = np.empty(num_subsets)
    for i in range(num_subsets):
        xs = x[rng.choice(x.shape[0], m, replace=False)]
        ys = y[rng.choice(y.shape[0], m, replace=False)]
        mmds[i] = _mmd2_unbiased_poly(xs, ys)
    return float(mmds.mean()), float(mmds.std())
