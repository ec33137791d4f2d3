"""`alit-eval allocate` end to end: per-image budgets at several thresholds and what they cost.

From one sweep (run here, or reused with ``--from-run``) it writes the selection table, the
fixed-budget curves, and per threshold: mean/median tokens, the histogram of selected budgets, the
share of censored images (never reaching the threshold), the quality at each image's selected
budget, the variable-token FID (every image at its own budget, KARL Tab. 6) with its shuffled control,
and the token saving against the fixed budget with the same mean quality.

Why the control: FID is not convex-bounded by the fixed-budget FIDs. Its mean term
``|mean(mixture) - mean(ref)|^2`` is at most the average of the per-budget mean terms, so *any* mix of
budgets can score below every fixed budget when the budgets shift the features in different
directions (measured on the demo tokenizer, 400 images: fixed budgets 152-173, a random 50/50 mix of
8 and 64 tokens 142). The shuffled control gives every threshold's budgets to random images (the same
histogram, no selection); the variable FID minus the control is what the selection itself buys.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from alit_eval.analysis import allocation as al
from alit_eval.analysis.reconstruction import PSNR_CAP_DB
from alit_eval.analysis.stats import bootstrap_mean_ci

if TYPE_CHECKING:
    import pandas as pd

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
    """Mean of `metric` per fixed budget (PSNR capped as in `reconstruction.summarize`)."""
    d = per_image[["budget", metric]].copy()
    d[metric] = _mean(d[metric].to_numpy(), metric)
    return d.groupby("budget", as_index=False)[metric].mean().rename(columns={metric: "value"}).assign(metric=metric)


def summarize_selection(selection: "pd.DataFrame", per_image: "pd.DataFrame", *, command: str, dataset: str,
                        preprocess: str, seed: int = 0, fid: dict[Any, float] | None = None,
                        fid_shuffled: dict[Any, float] | None = None, fid_condition: dict[str, Any] | None = None,
                        tokens: str = "selected_budget") -> tuple[list[dict], "pd.DataFrame", "pd.DataFrame"]:
    """Metric rows, the per-threshold summary and the budget histogram of a selection table.

    Args:
        selection: `allocation.selection_table` output.
        per_image: the sweep's per-image table (for the fixed-budget curve).
        fid: threshold value -> variable-token FID, when features exist.
        fid_shuffled: threshold value -> FID of the shuffled control (`shuffled_budgets`).
        fid_condition: extra condition keys of FID rows (reference, resize).
        tokens: the token column summarised: ``selected_budget`` (tokens spent, fallback included)
            or ``required_tokens`` (censored images at the largest budget).

    Returns:
        ``(rows, summary, histogram)``: metrics.csv rows; one row per threshold (``allocation_summary.csv``);
        the share of images per (threshold, selected budget) (``selected_budgets.csv``).
    """
    import pandas as pd

    from alit_eval.results.schema import format_condition

    base = {"command": command, "dataset": dataset, "preprocess": preprocess}
    criterion = str(selection["criterion"].iloc[0])
    column, direction = al.CRITERIA[criterion]
    curve = fixed_curve(per_image, column)
    budgets = curve["budget"].astype(int).tolist()
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
        for m in al.QUALITY:
            if m in g and g[m].notna().any():
                v = _mean(g[m].to_numpy(), m)
                mlo, mhi = bootstrap_mean_ci(v, seed=seed)
                rec[f"adaptive_{m}"] = float(np.nanmean(v))
                rows.append({**base, "metric": m, "value": rec[f"adaptive_{m}"], "n": n, "ci_low": mlo, "ci_high": mhi,
                             "condition": c})
        target = float(np.nanmean(_mean(g[column].to_numpy(), column)))
        fixed, status = al.fixed_budget_equivalent(budgets, curve["value"].to_numpy(), target, direction)
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
    from alit_eval.metrics.fid import frechet_distance

    sels = {(i, float(t)): dict(zip(g["index"].tolist(), g["selected_budget"].tolist()))
            for i, selection in enumerate(selections) for t, g in selection.groupby("threshold")}
    stats = al.variable_token_stats(store, sels)
    ref = stats["ref"]
    mu_r, sig_r = ref.mean(), ref.cov()
    out: list[dict[float, float]] = [{} for _ in selections]
    for i, t in sels:
        out[i][t] = frechet_distance(stats[i, t].mean(), stats[i, t].cov(), mu_r, sig_r)
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
    column = al.CRITERIA[str(g["criterion"].iloc[0])][0]
    g = g.sort_values(["selected_budget", column, "index"], kind="stable").reset_index(drop=True)
    pick = np.unique(np.linspace(0, len(g) - 1, min(n, len(g))).round().astype(int))
    return g.iloc[pick].reset_index(drop=True)


def save_images(source: Any, table: "pd.DataFrame", folder: Path) -> "pd.DataFrame":
    """Write the preprocessed originals of `table`'s images (by dataset index) as PNGs; add ``path``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for idx in table["index"].tolist():
        item = source.dataset[int(idx)]
        path = folder / f"{int(idx):06d}.png"
        if item["image"] is not None:
            Image.fromarray(item["image"].permute(1, 2, 0).numpy()).save(path)
        paths.append(str(path))
    return table.assign(path=paths)


def write_figures(run_dir: Any, inputs: Any, selection: "pd.DataFrame", summary: "pd.DataFrame",
                  hist: "pd.DataFrame", criterion: str, *, gallery: bool = True, figures: bool = True) -> list[str]:
    """The figures and the gallery (images + ``gallery.csv``); returns notes for meta.json."""
    import logging

    from alit_eval.results import plots, plots_allocation as pa
    from alit_eval.results.io import write_csv

    column = al.CRITERIA[criterion][0]
    if figures:
        plots.save(pa.tokens_vs_threshold(summary, criterion), run_dir.figures, "tokens_vs_threshold")
        plots.save(pa.budget_histogram(hist), run_dir.figures, "selected_budget_histogram")
        plots.save(pa.adaptive_vs_fixed(fixed_curve(inputs.result.per_image, column), summary, column),
                   run_dir.figures, "adaptive_vs_fixed")
    if not gallery:
        return []
    try:
        thr = float(summary["threshold"].iloc[len(summary) // 2])
        table = save_images(inputs.source(), gallery_table(selection, thr), run_dir.path / "gallery")
        table = table.assign(path=[str(Path(p).relative_to(run_dir.path)) for p in table["path"]])
        write_csv(table, run_dir.path / "gallery" / "gallery.csv")
        if figures:
            plots.save(pa.gallery(table, run_dir.path, column, thr), run_dir.figures, "gallery")
    except Exception as exc:  # a moved dataset must not lose the numbers already written
        logging.getLogger(__name__).warning("gallery skipped: %s", exc)
        return [f"gallery skipped: {exc}"]
    return []


def run(req: Any, *, from_run: str | None, thresholds: Sequence[str], criterion: str = "l1",
        fallback: str = "min-error", batch_criterion: int | None = None, gallery: bool = True, seed: int = 0,
        device: str = "cpu", offline: bool = False, results_dir: Any = "results", run_id: str | None = None,
        overwrite: bool = False, progress: bool = True, on_batch: Any = None,
        figures: bool = True) -> tuple[Any, "pd.DataFrame", "pd.DataFrame"]:
    """`alit-eval allocate` end to end; returns ``(run_dir, metrics, selection)``.

    ``figures=False`` writes every table but draws no figure (scripted use).
    """
    from alit_eval.analysis.reconstruction import summarize
    from alit_eval.engine.reuse import has_features, plan_sweep
    from alit_eval.results.io import open_run, write_csv, write_parquet
    from alit_eval.results.schema import metrics_frame

    al.criterion_spec(criterion)
    plan = plan_sweep(req, from_run, seed=seed, device=device, offline=offline, progress=progress)
    config = {**plan.config, "allocate": {"criterion": criterion, "thresholds": [str(t) for t in thresholds],
                                          "fallback": fallback, "batch_criterion": batch_criterion,
                                          "fid": bool(req.fid)}}
    run_dir = open_run(results_dir, "allocate", run_id=run_id, config=config, overwrite=overwrite)
    notes: list[str] = []
    try:
        inputs = plan.execute(run_dir.path, on_batch=on_batch)
        result, per_image = inputs.result, inputs.result.per_image
        resolved = al.resolve_thresholds(thresholds, per_image, criterion)
        selection = al.selection_table(per_image, resolved, criterion=criterion, fallback=fallback,
                                       batch_size=batch_criterion)
        fid = bool(req.fid) and has_features(result.store, result.budgets)
        if req.fid and not fid:
            notes.append("no Inception features in the sweep: FID skipped")
        fixed = summarize(result, command="allocate", dataset=inputs.dataset, preprocess=inputs.preprocess,
                          seed=seed, fid=fid)
        fids, shuffled = variable_fids_of(result.store, [selection, shuffled_budgets(selection, seed)]) if fid \
            else (None, None)
        resize = result.info.get("inception", {}).get("resize", "tf1")
        rows, summary, hist = summarize_selection(
            selection, per_image, command="allocate", dataset=inputs.dataset, preprocess=inputs.preprocess,
            seed=seed, fid=fids, fid_shuffled=shuffled, fid_condition={"reference": "originals", "resize": resize})
        metrics = metrics_frame([*fixed.to_dict("records"), *rows])
        run_dir.write_metrics(metrics)
        run_dir.write_per_image(per_image)
        write_parquet(selection, run_dir.file("selection.parquet"))
        write_csv(summary, run_dir.file("allocation_summary.csv"))
        write_csv(hist, run_dir.file("selected_budgets.csv"))
        notes += write_figures(run_dir, inputs, selection, summary, hist, criterion, gallery=gallery,
                               figures=figures)
        run_dir.finish(seed=seed, device=result.info.get("device"), extra={
            "checkpoint": inputs.checkpoint, "dataset": inputs.dataset, "preprocess": inputs.preprocess,
            "from_run": inputs.from_run, "rollout_calls": result.rollout_calls,
            "thresholds": [{"spec": s, "value": v} for s, v in resolved], "criterion": criterion,
            "fallback": fallback, "batch_criterion": batch_criterion,
            "selection_rule": ("official batch mean over groups of %d consecutive images" % batch_criterion
                               if batch_criterion else "per image (batch-independent)"),
            "fid_reference": "originals" if fid else None, "inception": result.info.get("inception"),
            "halting": result.info.get("halting"), "notes": notes,
            "skipped_images": [{"id": i, "error": e} for i, e in result.failed],
            "n_images": int(per_image["image_id"].nunique()),
        })
    finally:
        run_dir.release()
    return run_dir, metrics, selection
