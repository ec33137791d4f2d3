"""`alit-eval entropy-correlation`: does the number of tokens an image needs track its complexity?

From one sweep (run here or reused with ``--from-run``): complexity measures per image
(`analysis.complexity`, plus the demo ground truth and optional external scores), the required
tokens per image at each threshold (`analysis.token_selection`), and correlations (Spearman, Kendall,
Pearson; bootstrap CIs and p-values, `analysis.correlation`) of each measure with (a) the required
tokens and (b) the per-image L1 at every fixed budget.

Censored images (no budget reaches the threshold) count as needing the largest budget, flagged, in
the main result (``censored=as-max``); a sensitivity analysis repeats the token correlations without
them (``censored=excluded``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from alit_eval.analysis import token_selection as al
from alit_eval.analysis.complexity import measure_dataset, read_scores
from alit_eval.analysis.correlation import METHODS, METRIC_NAMES, correlation, partial_correlation
from alit_eval.analysis.selection_summary import save_images
from alit_eval.analysis.signal import as_dict as signal_dict, warn_if_flat
from alit_eval.analysis.skeleton import CommandRun, figure_title
from alit_eval.engine.plan import plan_sweep
from alit_eval.errors import AlitEvalError
from alit_eval.results import plots, plots_allocation as pa
from alit_eval.results.atomic import write_csv, write_parquet
from alit_eval.results.schema import format_condition, metrics_frame


GROUND_TRUTH = "complexity"  # the demo splits' documented scene complexity
N_BUCKETS = 5
N_EXAMPLES_PER_GROUP = 4


def measure_table(inputs: Any, *, scores: str | None = None, workers: int = 0) -> "pd.DataFrame":
    """Per-image measures for the sweep's images: computed ones, the ground truth, external scores.

    Images the sweep did not process (failed to decode) are left out.
    """
    per_image = inputs.result.per_image
    first = per_image.sort_values(["index", "budget"]).drop_duplicates("index")
    table = measure_dataset(inputs.source().dataset, workers=workers)
    table = table[table["image_id"].isin(set(first["image_id"]))].reset_index(drop=True)
    if GROUND_TRUTH in first and first[GROUND_TRUTH].notna().any():
        gt = dict(zip(first["image_id"], first[GROUND_TRUTH].astype("float64")))
        table[GROUND_TRUTH] = table["image_id"].map(gt)
    if scores:
        table["score"] = read_scores(scores, table["image_id"]).to_numpy()
    return table


def correlation_table(measures: "pd.DataFrame", selection: "pd.DataFrame", per_image: "pd.DataFrame", *,
                      control: str | None = None, n_boot: int = 1000, seed: int = 0,
                      methods: Sequence[str] = METHODS) -> "pd.DataFrame":
    """Every measure against required tokens (per threshold, two censoring treatments) and L1 per budget.

    Returns:
        One row per (measure, target, threshold or budget, censoring, method, partial or not):
        measure, target (``tokens``/``l1``), threshold, budget, censored (``as-max``/``excluded``/
        empty), method, control (empty when none), value, ci_low, ci_high, p_value, n, n_censored.
    """
    names = [c for c in measures.columns if c not in ("image_id", "index")]
    if control is not None and control not in names:
        raise AlitEvalError(f"--control {control!r} is not a measure; choose one of {', '.join(names)}")
    m = measures.set_index("image_id")
    budgets = sorted(int(b) for b in per_image["budget"].unique())
    rows: list[dict[str, Any]] = []

    def add(name: str, x: np.ndarray, y: np.ndarray, z: np.ndarray | None, **key: Any) -> None:
        for method in methods:
            e = correlation(x, y, method, n_boot=n_boot, seed=seed)
            rows.append({**key, "measure": name, "method": method, "control": "", "value": e.value,
                         "ci_low": e.ci_low, "ci_high": e.ci_high, "p_value": e.p_value, "n": e.n})
            if z is not None and method != "kendall":
                e = partial_correlation(x, y, z, method, n_boot=n_boot, seed=seed)
                rows.append({**key, "measure": name, "method": method, "control": control, "value": e.value,
                             "ci_low": e.ci_low, "ci_high": e.ci_high, "p_value": e.p_value, "n": e.n})

    for thr, g in selection.groupby("threshold", sort=True):
        g = g[g["image_id"].isin(m.index)]
        tokens = al.required_tokens(g, budgets[-1]).astype(np.float64)
        cens = g["censored"].to_numpy(bool)
        for name in names:
            x = m.loc[g["image_id"], name].to_numpy(np.float64)
            z = m.loc[g["image_id"], control].to_numpy(np.float64) if control and name != control else None
            base = {"target": "tokens", "threshold": float(thr), "budget": None, "n_censored": int(cens.sum())}
            add(name, x, tokens, z, **base, censored="as-max")
            add(name, x[~cens], tokens[~cens], None if z is None else z[~cens], **base, censored="excluded")
    for b in budgets:
        d = per_image[(per_image["budget"] == b) & per_image["image_id"].isin(m.index)]
        for name in names:
            x = m.loc[d["image_id"], name].to_numpy(np.float64)
            z = m.loc[d["image_id"], control].to_numpy(np.float64) if control and name != control else None
            add(name, x, d["l1"].to_numpy(np.float64), z, target="l1", threshold=None, budget=b, n_censored=None,
                censored="")
    cols = ["measure", "target", "threshold", "budget", "censored", "method", "control", "value", "ci_low",
            "ci_high", "p_value", "n", "n_censored"]
    out = pd.DataFrame(rows)[cols]
    out["budget"] = out["budget"].astype("Int64")
    out["n_censored"] = out["n_censored"].astype("Int64")
    return out


def correlation_rows(table: "pd.DataFrame", *, command: str, dataset: str, preprocess: str,
                     criterion: str) -> list[dict[str, Any]]:
    """metrics.csv rows of a `correlation_table`: the estimate (with CI) and its p-value per condition."""
    rows = []
    for r in table.to_dict("records"):
        cond = {"measure": r["measure"], "target": r["target"]}
        if r["target"] == "tokens":
            cond.update(threshold=f"{r['threshold']:.6g}", criterion=criterion, censored=r["censored"])
        if r["control"]:
            cond["control"] = r["control"]
        name = ("partial_" if r["control"] else "") + METRIC_NAMES[r["method"]]
        budget = None if pd.isna(r["budget"]) else int(r["budget"])
        base = {"command": command, "dataset": dataset, "preprocess": preprocess, "budget": budget, "n": int(r["n"]),
                "condition": format_condition(**cond)}
        rows.append({**base, "metric": name, "value": r["value"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
        rows.append({**base, "metric": f"{name}_p", "value": r["p_value"]})
    return rows


def primary_measure(measures: "pd.DataFrame") -> str:
    """The measure the figures bucket by: ground truth, else external score, else PNG bits per pixel."""
    for name in (GROUND_TRUTH, "score"):
        if name in measures and measures[name].notna().any():
            return name
    return "png_bpp"


def heatmap_table(measures: "pd.DataFrame", selection: "pd.DataFrame", measure: str, threshold: float,
                  max_budget: int, n_buckets: int = N_BUCKETS) -> "pd.DataFrame":
    """Share of each complexity bucket's images per required budget (quantile buckets of `measure`).

    Returns:
        ``heatmap.csv``: complexity_bucket (interval label), bucket_order, selected_budget, share, n_bucket.
    """
    g = selection[selection["threshold"] == threshold].drop(columns=[measure], errors="ignore")
    g = g.merge(measures[["image_id", measure]], on="image_id")
    g = g[np.isfinite(g[measure].to_numpy(np.float64))]
    tokens = al.required_tokens(g, max_budget)
    bucket = pd.qcut(g[measure].rank(method="first"), q=min(n_buckets, max(len(g), 1)), labels=False)
    d = pd.DataFrame({"bucket": bucket.to_numpy(), "value": g[measure].to_numpy(), "selected_budget": tokens})
    rows = []
    for k, part in d.groupby("bucket", sort=True):
        label = f"{part['value'].min():.3g}–{part['value'].max():.3g}"
        for b, cnt in part["selected_budget"].value_counts().items():
            rows.append({"complexity_bucket": label, "bucket_order": int(k), "selected_budget": int(b),
                         "share": cnt / len(part), "n_bucket": len(part)})
    return pd.DataFrame(rows).sort_values(["bucket_order", "selected_budget"]).reset_index(drop=True)


def example_table(measures: "pd.DataFrame", selection: "pd.DataFrame", measure: str, threshold: float,
                  max_budget: int, k: int = N_EXAMPLES_PER_GROUP) -> "pd.DataFrame":
    """`k` images at the low end, the median and the high end of required tokens (ties by `measure`)."""
    g = selection[selection["threshold"] == threshold].drop(columns=[measure], errors="ignore")
    g = g.merge(measures[["image_id", measure]], on="image_id")
    g = g.assign(required=al.required_tokens(g, max_budget), tokens_label=al.tokens_label(g, max_budget))
    g = g.sort_values(["required", measure, "index"]).reset_index(drop=True)
    n = len(g)
    starts = {"low": 0, "median": max(0, n // 2 - k // 2), "high": max(0, n - k)}
    parts = [g.iloc[s : s + k].assign(group=name) for name, s in starts.items()]
    return pd.concat(parts, ignore_index=True).drop_duplicates("image_id", keep="first").reset_index(drop=True)


def write_figures(run_dir: Any, inputs: Any, measures: "pd.DataFrame", selection: "pd.DataFrame", thr: float,
                  main: str, *, figures: bool = True) -> None:
    """``heatmap.csv``, the example images and (unless ``figures=False``) the four figures at `thr`."""
    per_image = inputs.result.per_image
    max_b = int(max(inputs.result.budgets))
    cells = heatmap_table(measures, selection, main, thr, max_b)
    write_csv(cells, run_dir.file("heatmap.csv"))
    ex = save_images(inputs.source(), example_table(measures, selection, main, thr, max_b), run_dir.path / "examples")
    ex = ex.assign(path=[str(Path(p).relative_to(run_dir.path)) for p in ex["path"]])
    write_csv(ex, run_dir.path / "examples" / "examples.csv")
    if not figures or not plots.drawing():
        return
    sel = selection[selection["threshold"] == thr]
    names = [c for c in measures.columns if c not in ("image_id", "index")]
    req_tok = dict(zip(sel["image_id"], al.required_tokens(sel, max_b)))
    long = measures.melt(id_vars=["image_id"], value_vars=names, var_name="measure")
    long["selected_budget"] = long["image_id"].map(req_tok)
    scatter = per_image[["image_id", "budget", "l1"]].merge(long[["image_id", "measure", "value"]], on="image_id")
    title = figure_title(inputs, "entropy-correlation")
    plots.save(pa.complexity_heatmap(cells, main, title=title), run_dir.figures, "complexity_token_heatmap")
    plots.save(pa.measure_boxplots(long.dropna(subset=["value", "selected_budget"]), title=title), run_dir.figures,
               "measures_by_required_tokens")
    plots.save(pa.measure_vs_error(scatter.dropna(subset=["value"]), title=title), run_dir.figures, "measures_vs_l1")
    ex = ex.assign(tokens=[f"{g}: {t}" for g, t in zip(ex["group"], ex["tokens_label"])],
                   value=[f"{main} {v:.3g}" for v in ex[main]])
    plots.save(pa.image_grid(ex, run_dir.path, ["tokens", "value"], cols=N_EXAMPLES_PER_GROUP,
                             suptitle=f"{title}\nlow / median / high required tokens at threshold {thr:.4g}"),
               run_dir.figures, "examples_by_required_tokens")


def run(req: Any, *, from_run: str | None, thresholds: Sequence[str], criterion: str = "l1",
        fallback: str = "min-error", scores: str | None = None, control: str | None = None, n_boot: int = 1000,
        methods: Sequence[str] = METHODS, seed: int = 0, device: str = "cpu", offline: bool = False,
        results_dir: Any = "results", run_id: str | None = None, overwrite: bool = False, reuse_finished: bool = False, progress: bool = True,
        on_batch: Any = None, figures: bool = True) -> tuple[Any, "pd.DataFrame"]:
    """`alit-eval entropy-correlation` end to end; returns ``(run_dir, correlations)``.

    ``figures=False`` writes every table but draws no figure (scripted use).
    """
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise AlitEvalError(f"--methods {','.join(methods)}: choose from {', '.join(METHODS)}")
    plan = plan_sweep(req, from_run, seed=seed, device=device, offline=offline, progress=progress)
    scores_name = Path(scores).name if scores else None
    config = {**plan.config, "entropy_correlation": {
        "thresholds": [str(t) for t in thresholds], "criterion": criterion, "fallback": fallback,
        "scores": scores_name, "control": control, "n_boot": n_boot, "methods": list(methods)}}
    with CommandRun("entropy-correlation", config, plan, results_dir=results_dir, run_id=run_id,
                    overwrite=overwrite, reuse_finished=reuse_finished) as run:
        inputs = run.sweep(on_batch=on_batch)
        per_image = inputs.result.per_image
        measures = measure_table(inputs, scores=scores, workers=req.workers)
        resolved = al.resolve_thresholds(thresholds, per_image, criterion)
        selection = al.selection_table(per_image, resolved, criterion=criterion, fallback=fallback)
        signal = warn_if_flat(per_image, criterion)  # no budget signal: the correlations below are spurious
        table = correlation_table(measures, selection, per_image, control=control, n_boot=n_boot, seed=seed,
                                  methods=methods).assign(**signal.columns())
        run.dir.write_metrics(metrics_frame(_metric_rows(inputs, table, selection, criterion)))
        run.dir.write_per_image(per_image)
        write_parquet(measures, run.dir.file("complexity.parquet"))
        write_parquet(selection, run.dir.file("selection.parquet"))
        write_csv(table, run.dir.file("correlations.csv"))
        # Heatmap, examples and figures at one threshold: the middle of those requested.
        thr = float(sorted(selection["threshold"].unique())[len(resolved) // 2])
        main = primary_measure(measures)
        write_figures(run.dir, inputs, measures, selection, thr, main, figures=figures)
        run.finish(seed, {
            "dataset": inputs.dataset, "thresholds": [{"spec": s, "value": v} for s, v in resolved],
            "criterion": criterion, "figure_threshold": thr, "primary_measure": main,
            "budget_signal": signal_dict(signal), "scores": scores_name,
            "control": control, "n_boot": n_boot,
            "censoring": "censored images count as the largest budget (censored=as-max); "
                         "censored=excluded rows drop them",
            "measures_from": "the sweep's dataset re-iterated once on the CPU (same preprocessing)",
            "n_images": int(len(measures)),
        })
    return run.dir, table


def _metric_rows(inputs: Any, table: pd.DataFrame, selection: pd.DataFrame, criterion: str) -> list[dict]:
    """metrics.csv rows: the correlations, and the censored share and mean tokens per threshold."""
    base = {"command": "entropy-correlation", "dataset": inputs.dataset, "preprocess": inputs.preprocess}
    rows = correlation_rows(table, **base, criterion=criterion)
    for thr, g in selection.groupby("threshold"):
        c = format_condition(criterion=criterion, threshold=f"{thr:.6g}")
        rows.append({**base, "metric": "censored_share", "value": float(g["censored"].mean()), "n": len(g),
                     "condition": c})
        rows.append({**base, "metric": "mean_tokens", "value": float(g["required_tokens"].mean()), "n": len(g),
                     "condition": c})
    return rows
