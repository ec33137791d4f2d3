"""Statistics for the token-allocation analyses: correlations, partial correlations, group comparisons.

Point estimates and p-values come from `scipy.stats` (Spearman ρ, Kendall τ-b, Pearson r,
Mann–Whitney U). Confidence intervals are percentile bootstraps over images: resample the n
images (pairs, for correlations) with replacement `n_boot` times from a `numpy.random.Generator`
seeded with `seed`, recompute the statistic, and take the (1-level)/2 and (1+level)/2 quantiles of
the finite replicates (a replicate is NaN when a resample has a constant column). The draws come
from `alit_eval.analysis.stats.bootstrap_indices`, so a result depends only on (data, seed, n_boot, level).

Partial correlation (``--control``) follows the textbook residual definition: regress x and y on the
controls (with an intercept) by least squares and correlate the residuals; Spearman's partial version
does this on ranks. Its p-value uses Student's t with n - 2 - k degrees of freedom (k controls).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
import numpy as np
from scipy import stats

from alit_eval.analysis.stats import BOOT_CHUNK, bootstrap_indices, percentile_ci

METHODS: tuple[str, ...] = ("spearman", "kendall", "pearson")
# metrics.csv names of each method's estimate.
METRIC_NAMES: dict[str, str] = {"spearman": "spearman_rho", "kendall": "kendall_tau", "pearson": "pearson_r"}


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap CI and p-value (NaN where undefined)."""

    value: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int


def _pairs(x: np.ndarray, y: np.ndarray, *more: np.ndarray) -> tuple[np.ndarray, ...]:
    arrays = [np.asarray(a, dtype=np.float64) for a in (x, y, *more)]
    if any(a.shape[0] != arrays[0].shape[0] for a in arrays):
        raise ValueError("x, y (and controls) need the same number of images")
    keep = np.all([np.isfinite(a).reshape(len(a), -1).all(axis=1) for a in arrays], axis=0)
    return tuple(a[keep] for a in arrays)


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of ``[k, n]`` arrays (NaN for a constant row)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=1) / den
    return np.where(den > 0, np.clip(r, -1.0, 1.0), np.nan)


def _rowwise_kendall(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall τ-b of each row pair of ``[k, n]`` arrays from pairwise signs (NaN when undefined).

    τ-b = Σ sx·sy / sqrt(Σ|sx| · Σ|sy|) over pairs i < j, with ``sx = sign(x_i - x_j)``: the
    numerator is concordant minus discordant pairs and each factor under the root counts the pairs
    not tied in that variable, which is scipy's definition. O(n²) memory per row, so only for small n.
    """
    out = np.empty(len(a))
    iu = np.triu_indices(a.shape[1], k=1)
    for r in range(len(a)):
        sx = np.sign(a[r][:, None] - a[r][None, :])[iu]
        sy = np.sign(b[r][:, None] - b[r][None, :])[iu]
        den = np.sqrt(np.abs(sx).sum() * np.abs(sy).sum())
        out[r] = (sx * sy).sum() / den if den > 0 else np.nan
    return out


KENDALL_PAIRWISE_MAX_N = 150  # above this, one scipy kendalltau (O(n log n)) per resample is faster


def _point(x: np.ndarray, y: np.ndarray, method: str) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns NaN, which we keep
        if method == "spearman":
            res = stats.spearmanr(x, y)
        elif method == "kendall":
            res = stats.kendalltau(x, y)
        elif method == "pearson":
            if np.ptp(x) == 0 or np.ptp(y) == 0:
                return float("nan"), float("nan")
            res = stats.pearsonr(x, y)
        else:
            raise ValueError(f"unknown correlation method {method!r}; valid: {', '.join(METHODS)}")
    return float(res.statistic), float(res.pvalue)


def _replicates(x: np.ndarray, y: np.ndarray, method: str, n_boot: int, seed: int) -> np.ndarray:
    out = []
    for idx in bootstrap_indices(len(x), n_boot, seed):
        if method == "pearson":
            out.append(_rowwise_pearson(x[idx], y[idx]))
        elif method == "spearman":  # Pearson of average ranks, as scipy defines Spearman with ties
            out.append(_rowwise_pearson(stats.rankdata(x[idx], axis=1), stats.rankdata(y[idx], axis=1)))
        elif len(x) <= KENDALL_PAIRWISE_MAX_N:
            out.append(_rowwise_kendall(x[idx], y[idx]))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append(np.array([stats.kendalltau(x[i], y[i]).statistic for i in idx], dtype=np.float64))
    return np.concatenate(out) if out else np.zeros(0)


def correlation(x: np.ndarray, y: np.ndarray, method: str = "spearman", *, n_boot: int = 1000, seed: int = 0,
                level: float = 0.95) -> Estimate:
    """Correlation of paired per-image values with a bootstrap CI and scipy's two-sided p-value.

    Args:
        x, y: ``[n]`` values; pairs with a non-finite member are dropped.
        method: ``spearman`` (ρ), ``kendall`` (τ-b, tie-corrected) or ``pearson`` (r).
        n_boot: bootstrap resamples (0 for no CI).
        seed: seed of the resampling generator.
        level: confidence level of the interval.

    Returns:
        `Estimate`; NaN value and p when fewer than 3 pairs or a constant column.
    """
    x, y = _pairs(x, y)
    if len(x) < 3:
        return Estimate(float("nan"), float("nan"), float("nan"), float("nan"), int(len(x)))
    value, p = _point(x, y, method)
    lo, hi = percentile_ci(_replicates(x, y, method, n_boot, seed), level) if n_boot else (float("nan"),) * 2
    return Estimate(value, lo, hi, p, int(len(x)))


def _residualize(v: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Residuals of ``v [k, n]`` after least squares on ``[1, z]`` (``z [k, n, c]``), row by row."""
    design = np.concatenate([np.ones(z.shape[:2] + (1,)), z], axis=2)
    coef = np.stack([np.linalg.lstsq(design[i], v[i], rcond=None)[0] for i in range(len(v))])
    return v - np.einsum("knc,kc->kn", design, coef)


def _partial_rows(x: np.ndarray, y: np.ndarray, z: np.ndarray, method: str) -> np.ndarray:
    if method == "spearman":
        x, y = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
        z = stats.rankdata(z, axis=1)
    elif method != "pearson":
        raise ValueError(f"partial correlation supports spearman and pearson, not {method!r}")
    rx, ry = _residualize(x, z), _residualize(y, z)
    r = _rowwise_pearson(rx, ry)
    # A variable the controls explain exactly leaves rounding noise (~1e-15 relative), whose
    # correlation means nothing: call it undefined.
    for v, res in ((x, rx), (y, ry)):
        ss = ((v - v.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        r = np.where((res * res).sum(axis=1) <= 1e-20 * ss, np.nan, r)
    return r


def partial_correlation(x: np.ndarray, y: np.ndarray, controls: np.ndarray, method: str = "spearman", *,
                        n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Estimate:
    """Partial correlation of x and y controlling for `controls` (``[n]`` or ``[n, k]``).

    Args:
        x, y: ``[n]`` values.
        controls: ``[n]`` or ``[n, k]`` control variables; rows with any non-finite value are dropped.
        method: ``spearman`` (on ranks) or ``pearson``.
        n_boot, seed, level: as in `correlation`.

    Returns:
        `Estimate` with the t-test p-value (df = n - 2 - k).
    """
    z = np.asarray(controls, dtype=np.float64)
    z = z[:, None] if z.ndim == 1 else z
    x, y, z = _pairs(x, y, z)
    k = z.shape[1]
    if len(x) < k + 3:
        return Estimate(float("nan"), float("nan"), float("nan"), float("nan"), int(len(x)))
    r = float(_partial_rows(x[None], y[None], z[None], method)[0])
    df = len(x) - 2 - k
    if np.isfinite(r) and abs(r) < 1:
        t = r * np.sqrt(df / (1.0 - r * r))
        p = float(2.0 * stats.t.sf(abs(t), df))
    else:
        p = 0.0 if np.isfinite(r) else float("nan")
    reps = [_partial_rows(x[i], y[i], z[i], method) for i in bootstrap_indices(len(x), n_boot, seed)]
    lo, hi = percentile_ci(np.concatenate(reps), level) if reps else (float("nan"),) * 2
    return Estimate(r, lo, hi, p, int(len(x)))


@dataclass(frozen=True)
class GroupComparison:
    """Group b against reference group a.

    Attributes:
        mean_a, mean_b: group means.
        diff: mean(b) - mean(a), with a bootstrap CI (each group resampled on its own).
        u: Mann–Whitney U of b against a (scipy's statistic for the first argument, b).
        p_value: two-sided Mann–Whitney p-value.
        effect: common-language effect size U / (n_a n_b): P(b > a) + P(b = a) / 2.
    """

    mean_a: float
    mean_b: float
    diff: Estimate
    u: float
    p_value: float
    effect: float
    n_a: int
    n_b: int


def compare_groups(a: np.ndarray, b: np.ndarray, *, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> GroupComparison:
    """Mean difference (b - a) with a bootstrap CI, and a two-sided Mann–Whitney U test.

    The two groups are resampled independently (unpaired): per chunk of `BOOT_CHUNK` resamples the
    generator draws ``[k, n_a]`` indices into `a`, then ``[k, n_b]`` into `b`.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    nan = float("nan")
    if len(a) == 0 or len(b) == 0:
        return GroupComparison(nan, nan, Estimate(nan, nan, nan, nan, 0), nan, nan, nan, len(a), len(b))
    diff = float(b.mean() - a.mean())
    reps = np.zeros(0)
    if n_boot and len(a) > 1 and len(b) > 1:
        rng = np.random.default_rng(seed)
        parts = []
        for start in range(0, n_boot, BOOT_CHUNK):
            k = min(BOOT_CHUNK, n_boot - start)
            ia = rng.integers(0, len(a), size=(k, len(a)))
            ib = rng.integers(0, len(b), size=(k, len(b)))
            parts.append(b[ib].mean(axis=1) - a[ia].mean(axis=1))
        reps = np.concatenate(parts)
    lo, hi = percentile_ci(reps, level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.mannwhitneyu(b, a, alternative="two-sided")
    u = float(res.statistic)
    return GroupComparison(float(a.mean()), float(b.mean()), Estimate(diff, lo, hi, float(res.pvalue), len(a) + len(b)),
                           u, float(res.pvalue), u / (len(a) * len(b)), len(a), len(b))
