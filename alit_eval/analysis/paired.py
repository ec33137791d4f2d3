"""Paired comparisons of two tokenizers on the same images, and tokens needed at matched quality (primitives).

Two tokenizers evaluated on the same images give one value per image each, so their difference is
tested per image (paired), not as two independent groups:

- `paired_compare`: mean of the per-image differences (b - a) with a percentile bootstrap CI over
  images (the pairs are resampled together) and the two-sided **Wilcoxon signed-rank test**
  (``scipy.stats.wilcoxon``, ``zero_method="wilcox"``: pairs with a zero difference are dropped,
  their count is reported; exact p-values for small samples without ties, the normal
  approximation otherwise, as scipy decides).
- `paired_tests`: each tokenizer against a reference: required tokens per threshold, L1 per common budget.
- `matched_tokens`: per tokenizer and threshold, the tokens each image needs (the tokens the decoder
  receives at its smallest swept budget whose criterion reaches the threshold,
  `token_selection.selection_table` and `alit_eval.analysis.tokens`) summarised as
  the mean with a bootstrap CI, the median and the censored share (KARL Tab. 2 style "tokens at
  equal L1"). Censored images (no swept budget reaches the threshold) count as the tokenizer's
  largest swept budget, so their mean is a lower bound; the share is reported beside it.

Pure functions of per-image tables; nothing here runs a tokenizer.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from alit_eval.analysis import token_selection as al, tokens as received
from alit_eval.analysis.quality import PSNR_CAP_DB
from alit_eval.analysis.stats import bootstrap_mean_ci

SELECTED = ("l1", "psnr", "ssim", "lpips")  # quality at the selected budgets, averaged per threshold
PAIRED_TEST = ("Wilcoxon signed-rank test, two-sided, on per-image paired differences (scipy.stats.wilcoxon, "
               "zero_method='wilcox': zero differences dropped)")


@dataclass(frozen=True)
class PairedComparison:
    """Tokenizer b against tokenizer a on the same images.

    Attributes:
        n: pairs with both values finite.
        mean_a, mean_b: means over those pairs.
        diff: mean of (b - a); ci_low/ci_high its 95% bootstrap CI (images resampled).
        statistic: Wilcoxon's statistic (scipy's, for two-sided: min of the signed rank sums).
        p_value: two-sided p-value (1.0 when every difference is zero; NaN with no pair).
        n_nonzero: pairs with a non-zero difference (the ones the test ranks).
    """

    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    n_nonzero: int


def paired_compare(a: Sequence[float], b: Sequence[float], *, n_boot: int = 1000, seed: int = 0) -> PairedComparison:
    """Paired mean difference (b - a) with a bootstrap CI and a Wilcoxon signed-rank test.

    Args:
        a, b: per-image values of the two tokenizers, aligned (same image at the same position).
        n_boot: bootstrap resamples for the CI (0: no CI).
        seed: seed of the bootstrap generator.
    """
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired values need equal lengths, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    nan = float("nan")
    if not len(x):
        return PairedComparison(0, nan, nan, nan, nan, nan, nan, nan, 0)
    d = y - x
    lo, hi = bootstrap_mean_ci(d, seed=seed, n_boot=n_boot) if n_boot else (nan, nan)
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        statistic, p = 0.0, 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns about small samples and ties; the p-value says enough
            res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        statistic, p = float(res.statistic), float(res.pvalue)
    return PairedComparison(len(x), float(x.mean()), float(y.mean()), float(d.mean()), lo, hi, statistic, p, nonzero)


def matched_tokens(per_image: Mapping[str, pd.DataFrame], thresholds: Sequence[tuple[str, float]], *,
                   criterion: str = "l1", fallback: str = "min-error", n_boot: int = 1000,
                   seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tokens each image needs per tokenizer and threshold, and their summary.

    Args:
        per_image: tokenizer label -> the engine's per-image table of its sweep.
        thresholds: ``[(spec, value)]`` (`token_selection.resolve_thresholds`), the same numbers for all.
        criterion, fallback: see `token_selection.select_indices`.

    Returns:
        ``(selection, summary)``. selection: `token_selection.selection_table` rows plus ``tokenizer``
        and ``max_budget``; ``required_budget`` is the selected budget, or the tokenizer's largest
        swept budget when ``censored``; ``required_tokens`` the tokens the decoder receives there
        (`alit_eval.analysis.tokens`: fewer than the budget for a family that drops slots).
        summary: one row per (tokenizer, threshold): threshold,
        threshold_spec, criterion, mean_tokens, ci_low, ci_high, median_tokens, n, n_censored,
        censored_share, max_budget, and ``<metric>_selected``: the mean of each quality metric at the
        images' selected budgets (KARL Tab. 2's LPIPS/SSIM at the tokens used).
    """
    selections, rows = [], []
    for name, table in per_image.items():
        sel = al.selection_table(table, thresholds, criterion=criterion, fallback=fallback)
        max_budget = int(table["budget"].max())
        sel["required_budget"] = al.required_tokens(sel, max_budget)
        sel["required_tokens"] = received.at_selection(sel, table, max_budget)  # what the decoder receives
        sel.insert(0, "tokenizer", name)
        sel["max_budget"] = max_budget
        selections.append(sel)
        for (spec, thr), g in sel.groupby(["threshold_spec", "threshold"], sort=False):
            tokens = g["required_tokens"].to_numpy(np.float64)
            lo, hi = bootstrap_mean_ci(tokens, seed=seed, n_boot=n_boot) if n_boot else (np.nan, np.nan)
            cens = int(g["censored"].sum())
            rows.append({"tokenizer": name, "threshold": float(thr), "threshold_spec": spec, "criterion": criterion,
                         "mean_tokens": float(tokens.mean()), "ci_low": lo, "ci_high": hi,
                         "median_tokens": float(np.median(tokens)), "n": len(tokens), "n_censored": cens,
                         "censored_share": cens / len(tokens), "max_budget": max_budget,
                         **{f"{m}_selected": float(np.mean(np.minimum(g[m].to_numpy(np.float64), PSNR_CAP_DB)))
                            for m in SELECTED if m in g and g[m].notna().all()}})
    return pd.concat(selections, ignore_index=True), pd.DataFrame(rows)


def paired_tests(selection: pd.DataFrame, per_image: Mapping[str, pd.DataFrame], reference: str, *,
                 n_boot: int, seed: int) -> pd.DataFrame:
    """Each tokenizer against the reference on the same images (`paired_compare`).

    Quantities: ``tokens`` (required tokens per threshold; censored counted at each tokenizer's
    largest swept budget) and ``l1`` (per budget both tokenizers produce).
    """
    rows = []
    others = [n for n in per_image if n != reference]

    def pair(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        common = a.index.intersection(b.index)
        return a.loc[common].to_numpy(np.float64), b.loc[common].to_numpy(np.float64)

    for (spec, thr), g in selection.groupby(["threshold_spec", "threshold"], sort=False):
        ref = g[g["tokenizer"] == reference].set_index("image_id")["required_tokens"]
        for name in others:
            mine = g[g["tokenizer"] == name].set_index("image_id")
            x, y = pair(ref, mine["required_tokens"])
            c = paired_compare(x, y, n_boot=n_boot, seed=seed)
            cens = int(g.loc[g["tokenizer"] == reference, "censored"].sum() + mine["censored"].sum())
            rows.append(_pair_row(name, reference, "tokens", float(thr), None, c, censored=cens))
    for name in others:
        a, b = per_image[reference], per_image[name]
        for budget in sorted(set(a["budget"]) & set(b["budget"])):
            x, y = pair(a[a["budget"] == budget].set_index("image_id")["l1"],
                        b[b["budget"] == budget].set_index("image_id")["l1"])
            rows.append(_pair_row(name, reference, "l1", None, int(budget),
                                  paired_compare(x, y, n_boot=n_boot, seed=seed)))
    out = pd.DataFrame(rows)
    if len(out):
        out["budget"] = out["budget"].astype("Int64")
    return out


def _pair_row(name: str, reference: str, quantity: str, thr: float | None, budget: int | None, c: Any, *,
              censored: int = 0) -> dict[str, Any]:
    return {"tokenizer": name, "reference": reference, "quantity": quantity, "threshold": thr, "budget": budget,
            "n_pairs": c.n, "mean_reference": c.mean_a, "mean": c.mean_b, "diff": c.diff, "ci_low": c.ci_low,
            "ci_high": c.ci_high, "test": "wilcoxon-signed-rank", "statistic": c.statistic, "p_value": c.p_value,
            "n_nonzero": c.n_nonzero, "censored_images": censored}
