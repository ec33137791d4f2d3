"""What a token selection costs and buys: per-threshold summaries, variable-token FID, galleries.

Primitives over a selection table (`alit_eval.analysis.token_selection.selection_table`): tokens
used, censoring, the quality at each image's selected budget, the fixed budget with the same mean
quality (token saving), the variable-token FID (every image at its own budget, KARL Tab. 6) and its
shuffled-budget control, and the images of a gallery. Used by `allocate` and `familiarity`
(`summarize_selection`) and `entropy-correlation` (`save_images`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from alit_eval.analysis import token_selection as ts, tokens as received
from alit_eval.analysis.quality import PSNR_CAP_DB
from alit_eval.analysis.stats import bootstrap_mean_ci
from alit_eval.metrics.feature_distance import FrechetReference
from alit_eval.results.schema import format_condition

GALLERY_N = 16


def _mean(values: np.ndarray, metric: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return np.minimum(v, PSNR_CAP_DB) if metric == "psnr" else v


def threshold_condition(group: "pd.DataFrame") -> dict[str, Any]:
    """The condition keys shared by every row of one threshold's selection."""
    first = group.iloc[0]
    cond = {"criterion": first["criterion"], "fallback": first["fallback"], "threshold": f"{first['threshold']:.6g}"}
    if int(first["batch_size"]):
        cond["batch"] = int(first["batch_size"])
    spec = str(first["threshold_spec"])
    try:
        float(spec)
    except ValueError:
        cond["spec"] = spec
    return cond


def fixed_curve(per_image: "pd.DataFrame", metric: str) -> "pd.DataFrame":
    """Mean of `metric` per fixed budget (PSNR capped as in `quality.summarize`)."""
    d = per_image[["budget", metric]].copy()
    d[metric] = _mean(d[metric].to_numpy(), metric)
    return d.groupby("budget", as_index=False)[metric].mean().rename(columns={metric: "value"}).assign(metric=metric)


def summarize_selection(selection: "pd.DataFrame", per_image: "pd.DataFrame", *, command: str, dataset: str,
                        preprocess: str, seed: int = 0, fid: dict[Any, float] | None = None,
                        fid_shuffled: dict[Any, float] | None = None, fid_condition: dict[str, Any] | None = None,
                        tokens: str = "selected_budget") -> tuple[list[dict], "pd.DataFrame", "pd.DataFrame"]:
    """Metric rows, the per-threshold summary and the budget histogram of a selection table.

    Args:
        selection: `token_selection.selection_table` output.
        per_image: the sweep's per-image table (for the fixed-budget curve).
        fid: threshold value -> variable-token FID, when features exist.
        fid_shuffled: threshold value -> FID of the shuffled control (`shuffled_budgets`).
        fid_condition: extra condition keys of FID rows (reference, resize).
        tokens: the token column summarised: ``selected_budget`` (tokens spent, fallback included),
            ``tokens_received`` (what the decoder receives at that budget, `alit_eval.analysis.tokens`;
            the fixed-budget match is then made on the tokens received per fixed budget too)
            or ``required_tokens`` (censored images at the largest budget).

    Returns:
        ``(rows, summary, histogram)``: metrics.csv rows; one row per threshold (``allocation_summary.csv``);
        the share of images per (threshold, selected budget) (``selected_budgets.csv``).

    One loop over thresholds fills the three outputs side by side (over 60 lines): split, each
    piece would need the same per-threshold state (counts, CI, fixed-budget match).
    """
    base = {"command": command, "dataset": dataset, "preprocess": preprocess}
    criterion = str(selection["criterion"].iloc[0])
    column, direction = ts.CRITERIA[criterion]
    curve = fixed_curve(per_image, column)
    budgets = curve["budget"].astype(int).tolist()
    # the fixed budgets on the same token axis as the selection's mean (tokens received, e.g. KARL's kept slots)
    axis = received.mean_per_budget(per_image).reindex(budgets).to_numpy(np.float64) \
        if tokens == "tokens_received" else np.asarray(budgets, dtype=np.float64)
    rows: list[dict] = []
    summary, hist = [], []
    for thr, g in selection.groupby("threshold", sort=True):
        cond = threshold_condition(g)
        c = format_condition(**cond)
        counts = g[tokens].to_numpy(dtype=np.float64)
        lo, hi = bootstrap_mean_ci(counts, seed=seed)
        n = len(g)
        rec = {"threshold": float(thr), "threshold_spec": g["threshold_spec"].iloc[0], "n": n,
               "mean_tokens": counts.mean(), "mean_tokens_ci_low": lo, "mean_tokens_ci_high": hi,
               "median_tokens": float(np.median(counts)), "n_censored": int(g["censored"].sum()),
               "censored_share": float(g["censored"].mean())}
        rows += [{**base, "metric": "mean_tokens", "value": rec["mean_tokens"], "n": n, "ci_low": lo, "ci_high": hi,
                  "condition": c},
                 {**base, "metric": "median_tokens", "value": rec["median_tokens"], "n": n, "condition": c},
                 {**base, "metric": "censored_share", "value": rec["censored_share"], "n": n, "condition": c}]
        for b in budgets:
            share = float((g["selected_budget"] == b).mean())
            hist.append({"threshold": float(thr), "budget": b, "share": share, "n": n})
            rows.append({**base, "budget": b, "metric": "selected_share", "value": share, "n": n, "condition": c})
        for m in dict.fromkeys((*ts.QUALITY, column)):
            if m in g and g[m].notna().any():
                v = _mean(g[m].to_numpy(), m)
                mlo, mhi = bootstrap_mean_ci(v, seed=seed)
                rec[f"adaptive_{m}"] = float(np.nanmean(v))
                rows.append({**base, "metric": m, "value": rec[f"adaptive_{m}"], "n": n, "ci_low": mlo, "ci_high": mhi,
                             "condition": c})
        target = float(np.nanmean(_mean(g[column].to_numpy(), column)))
        fixed, status = ts.fixed_budget_equivalent(axis, curve["value"].to_numpy(), target, direction)
        saving = 100.0 * (1.0 - rec["mean_tokens"] / fixed) if np.isfinite(fixed) else float("nan")
        rec.update(fixed_budget_equivalent=fixed, equivalence=status, token_saving_pct=saving, matched=column)
        ce = format_condition(**cond, matched=column, equivalence=status)
        rows += [{**base, "metric": "fixed_budget_equivalent", "value": fixed, "n": n, "condition": ce},
                 {**base, "metric": "token_saving_pct", "value": saving, "n": n, "condition": ce}]
        for key, label, values in (("variable_rfid", "variable", fid), ("shuffled_rfid", "shuffled", fid_shuffled)):
            if values is not None and float(thr) in values:
                rec[key] = values[float(thr)]
                rows.append({**base, "metric": "rfid", "value": rec[key], "n": n,
                             "condition": format_condition(**cond, **(fid_condition or {}), selection=label)})
        summary.append(rec)
    return rows, pd.DataFrame(summary), pd.DataFrame(hist)


def variable_fids_of(store: Any, selections: Sequence["pd.DataFrame"]) -> list[dict[float, float]]:
    """Variable-token FID against the originals, per threshold, for each selection table (e.g. the
    selection and its shuffled control), in one pass over the shards."""
    sels = {(i, float(t)): dict(zip(g["index"].tolist(), g["selected_budget"].tolist()))
            for i, selection in enumerate(selections) for t, g in selection.groupby("threshold")}
    stats = ts.variable_token_stats(store, sels)
    reference = FrechetReference.of(stats["ref"])
    out: list[dict[float, float]] = [{} for _ in selections]
    for i, t in sels:
        out[i][t] = reference.distance_to(stats[i, t])
    return out


def shuffled_budgets(selection: "pd.DataFrame", seed: int) -> "pd.DataFrame":
    """The variable-FID control: within each threshold, the selected budgets permuted over the images.

    The budget histogram is unchanged; which image gets which budget is random (``seed``).
    """
    rng = np.random.default_rng(seed)
    out = selection.copy()
    for _, g in selection.groupby("threshold", sort=True):
        out.loc[g.index, "selected_budget"] = rng.permutation(g["selected_budget"].to_numpy())
    return out


def gallery_table(selection: "pd.DataFrame", threshold: float, n: int = GALLERY_N) -> "pd.DataFrame":
    """Up to `n` images evenly spread over the order (selected budget, quality) at `threshold`."""
    g = selection[selection["threshold"] == threshold]
    column = ts.CRITERIA[str(g["criterion"].iloc[0])][0]
    g = g.sort_values(["selected_budget", column, "index"], kind="stable").reset_index(drop=True)
    pick = np.unique(np.linspace(0, len(g) - 1, min(n, len(g))).round().astype(int))
    out = g.iloc[pick].reset_index(drop=True)
    return out.assign(tokens_label=ts.tokens_label(out, int(selection["selected_budget"].max())))


def save_images(source: Any, table: "pd.DataFrame", folder: Path) -> "pd.DataFrame":
    """Write the preprocessed originals of `table`'s images (by dataset index) as PNGs; add ``path``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for idx in table["index"].tolist():
        item = source.dataset[int(idx)]
        path = folder / f"{int(idx):06d}.png"
        if item["image"] is not None:
            Image.fromarray(item["image"].permute(1, 2, 0).numpy()).save(path)
        paths.append(str(path))
    return table.assign(path=paths)
