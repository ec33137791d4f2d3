"""`alit-eval downstream` end to end: labels and targets, probe tables, selection, the run folder.

The probe primitives (features per kind, splits, classifiers, CIs, selection rules) are in
`alit_eval.analysis.probe`; this module reads labels/targets, builds the result tables from the
engine's stored features, and writes the run.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from alit_eval.analysis.probe import (
    BUDGET_FREE, CV_FOLDS, DEFAULT_KINDS, FEATURE_KINDS, FeatureTap, MIN_PER_CLASS, TAP_CAPTURES,
    captures_for, fit_classifier, fit_regressor, load_features, r2, random_split, select_by_reconstruction,
    smallest_correct, spearman, stratified_split, topk_correct,
)
from alit_eval.analysis.skeleton import CommandRun, figure_title
from alit_eval.analysis.stats import bootstrap_ci, bootstrap_mean_ci
from alit_eval.engine.plan import SweepPlan
from alit_eval.engine.prepare import prepare
from alit_eval.errors import AlitEvalError, DataError
from alit_eval.results import plots, plots_tokens
from alit_eval.results.schema import format_condition, metrics_frame


log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- the command
@dataclass
class ProbeOptions:
    """Options of the probe stage (all recorded in config.json)."""

    kinds: tuple[str, ...] = DEFAULT_KINDS
    test_fraction: float = 0.3
    threshold: float = 0.05
    recon_view: bool = True
    select_kind: str = "latent"
    labels_csv: str | None = None
    targets_csv: str | None = None
    n_boot: int = 1000


def read_mapping(path: str | Path, value: str) -> dict[str, str]:
    """Read a CSV with columns ``image,<value>`` (header optional) into ``{image: value}``."""
    rows = list(csv.reader(Path(path).read_text(encoding="utf-8-sig").splitlines()))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if rows and rows[0][0].strip().lower() in {"image", "image_id", "id", "path", "file", "filename", "name"}:
        rows = rows[1:]
    bad = [r for r in rows if len(r) != 2]
    if bad or not rows:
        raise DataError(f"{path}: expected rows 'image,{value}' (got {bad[0] if bad else 'no rows'})")
    return {r[0].strip(): r[1].strip() for r in rows if r[1].strip()}  # an empty value = no value


def match_ids(image_ids: Sequence[str], mapping: dict[str, str]) -> list[str | None]:
    """Look each image id up by full id, then file name, then file stem."""
    by_name = {Path(k).name: v for k, v in mapping.items()}
    by_stem = {Path(k).stem: v for k, v in mapping.items()}
    return [mapping.get(i, by_name.get(Path(i).name, by_stem.get(Path(i).stem))) for i in image_ids]


def _labels(ids: np.ndarray, per_image: Any, opts: ProbeOptions) -> list[str | None]:
    if opts.labels_csv:
        return match_ids(ids, read_mapping(opts.labels_csv, "label"))
    if "label" not in per_image:
        return [None] * len(ids)
    first = per_image.drop_duplicates("image_id").set_index("image_id")["label"].reindex(ids)
    return [None if pd.isna(v) else str(v) for v in first]


def _ci_row(base: dict, values: np.ndarray, *, seed: int, n_boot: int, **row: Any) -> dict[str, Any]:
    """A metrics row holding the mean of per-image `values` with its bootstrap CI."""
    lo, hi = bootstrap_mean_ci(values, seed=seed, n_boot=n_boot)
    return {**base, "value": float(np.mean(values)) if len(values) else None, "n": int(len(values)),
            "ci_low": lo, "ci_high": hi, **row}


def probe_tables(store: Any, per_image: Any, budgets: list[int], opts: ProbeOptions, *, seed: int,
                 dataset: str, preprocess: str) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Every probe number of a finished sweep.

    Returns:
        ``(metrics, per-image columns keyed by image_id, per-(image, budget) columns, info)``.

    Over 60 lines because every probe kind shares one split, one label vector and the same three
    output tables; the per-kind work is in `_selection` and `_regression`.
    """
    ids = store.concat("id").astype(str)
    base = {"command": "downstream", "dataset": dataset, "preprocess": preprocess}
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {"feature_kinds": {k: FEATURE_KINDS[k][1] for k in opts.kinds}}
    per_img = pd.DataFrame({"image_id": ids, "split": "none"})
    per_budget = pd.DataFrame({"image_id": np.repeat(ids, len(budgets)), "budget": np.tile(budgets, len(ids))})
    labels = _labels(ids, per_image, opts)
    if opts.labels_csv and all(v is None for v in labels):
        raise DataError(f"{opts.labels_csv}: no row names an image of this dataset (e.g. {ids[0]!r})")
    counts = pd.Series([v for v in labels if v is not None], dtype=object).value_counts()
    rare = sorted(counts[counts < MIN_PER_CLASS].index.tolist())
    idx = np.array([k for k, v in enumerate(labels) if v is not None and v not in rare], dtype=np.int64)
    y = np.asarray([labels[k] for k in idx], dtype=object).astype(str)
    info.update(n_labelled=int(counts.sum()), dropped_rare_classes=rare)
    if len(np.unique(y)) >= 2:
        tr, te = stratified_split(y, opts.test_fraction, seed)
        per_img.loc[idx[tr], "split"], per_img.loc[idx[te], "split"] = "train", "test"
        n_classes = len(np.unique(y))
        info.update(n_classes=n_classes, n_train=len(tr), n_test=len(te))
        majority = pd.Series(y[tr]).value_counts().index[0]
        cond = format_condition(view="baseline")
        rows += [{**base, "metric": "chance_majority", "value": float(np.mean(y[te] == majority)), "n": len(te),
                  "condition": cond},
                 {**base, "metric": "chance_uniform", "value": 1.0 / n_classes, "n": len(te), "condition": cond}]
        correct: dict[str, np.ndarray] = {}
        top_model = None
        for kind in opts.kinds:
            hits = []
            for b in ([max(budgets)] if kind in BUDGET_FREE else budgets):
                x = load_features(store, kind, b)[idx]
                model = fit_classifier(x[tr], y[tr], seed=seed)
                if kind == "latent" and b == max(budgets):
                    top_model = model
                hits.append(topk_correct(model, x[te], y[te], 1))
                row = {"budget": None if kind in BUDGET_FREE else b,
                       "condition": format_condition(feature=kind, view="tokens", c=model.chosen_c)}
                rows.append(_ci_row(base, hits[-1].astype(float), seed=seed, n_boot=opts.n_boot, metric="top1", **row))
                if n_classes > 5:
                    top5 = topk_correct(model, x[te], y[te], 5).astype(float)
                    rows.append(_ci_row(base, top5, seed=seed, n_boot=opts.n_boot, metric="top5", **row))
            correct[kind] = np.stack(hits, axis=1)
        sel_rows, sel_img, sel_budget = _selection(store, per_image, budgets, opts, ids, y, idx, (tr, te),
                                                   correct, top_model, base, seed)
        rows += sel_rows
        test_pos = idx[te]
        for col, v in sel_img.items():
            per_img[col] = np.nan
            per_img.loc[test_pos, col] = v
        for col, v in sel_budget.items():  # [n_test, n_budgets] -> the long (image, budget) layout
            per_budget[col] = np.nan
            rows_at = (test_pos[:, None] * len(budgets) + np.arange(len(budgets))[None, :]).ravel()
            per_budget.loc[rows_at, col] = v.astype(float).ravel()
    else:
        info["classification"] = "skipped: fewer than two classes with enough labelled images"
        log.warning("no classification probe: need labels (class subfolders, demo labels or --labels file.csv)")
    reg_rows, reg_info = _regression(store, per_image, ids, budgets, opts, base, seed)
    rows += reg_rows
    info.update(reg_info)
    return metrics_frame(rows), per_img, per_budget, info


def _selection(store, per_image, budgets, opts, ids, y, idx, split, correct, top_model, base, seed):
    """Token selection by classification vs reconstruction; the One-D-Piece reconstruction view."""
    tr, te = split
    rows: list[dict[str, Any]] = []
    per_budget: dict[str, np.ndarray] = {}
    kind = opts.select_kind if opts.select_kind in correct and opts.select_kind not in BUDGET_FREE else None
    l1 = per_image.pivot(index="image_id", columns="budget", values="l1").reindex(ids[idx[te]])[budgets]
    by_l1, fallback = select_by_reconstruction(l1.to_numpy(np.float64), budgets, opts.threshold)
    criteria: dict[str, np.ndarray] = {"l1": by_l1}
    conds = {"l1": format_condition(criterion="l1", threshold=opts.threshold)}
    if kind is not None:
        criteria["probe"] = smallest_correct(correct[kind], budgets)
        conds["probe"] = format_condition(criterion="probe", feature=kind)
        per_budget["probe_correct"] = correct[kind]
    if opts.recon_view:
        top = max(budgets)
        if top_model is None:
            top_model = fit_classifier(load_features(store, "latent", top)[idx][tr], y[tr], seed=seed)
        hits = []
        for b in budgets:
            x = store.concat(f"cap_recon_latent_mean_{b}").astype(np.float64)[idx][te]
            hits.append(topk_correct(top_model, x, y[te], 1))
            cond = format_condition(feature="latent", view="reconstruction", c=top_model.chosen_c)
            rows.append(_ci_row(base, hits[-1].astype(float), seed=seed, n_boot=opts.n_boot, budget=b, metric="top1",
                                condition=cond))
        per_budget["recon_probe_correct"] = np.stack(hits, axis=1)
        criteria["recon_probe"] = smallest_correct(per_budget["recon_probe_correct"], budgets)
        conds["recon_probe"] = format_condition(criterion="recon_probe", feature="latent")
    for name, sel in criteria.items():
        ok = np.isfinite(sel)
        rows.append(_ci_row(base, sel[ok], seed=seed, n_boot=opts.n_boot, metric="mean_selected_tokens",
                            condition=conds[name]))
        missed = fallback if name == "l1" else ~ok  # the L1 rule never fails: it falls back to min L1
        rows.append({**base, "metric": "fallback_frac" if name == "l1" else "never_selected_frac",
                     "value": float(missed.mean()), "n": len(sel), "condition": conds[name]})
    for name in [c for c in criteria if c != "l1"]:
        a, b = criteria[name], criteria["l1"]
        ok = np.isfinite(a)
        lo, hi = bootstrap_ci(spearman, (a[ok], b[ok]), seed=seed, n_boot=opts.n_boot)
        rows.append({**base, "metric": "spearman_rho", "value": spearman(a[ok], b[ok]), "n": int(ok.sum()),
                     "ci_low": lo, "ci_high": hi,
                     "condition": format_condition(criteria=f"{name}-vs-l1", threshold=opts.threshold)})
    per_img = {f"selected_tokens_{k}": v for k, v in criteria.items()}
    return rows, {**per_img, "l1_fallback": fallback.astype(float)}, per_budget


def _targets(ids: np.ndarray, per_image: Any, opts: ProbeOptions) -> dict[str, np.ndarray]:
    """Continuous targets per image id (NaN where missing): a CSV, or the demo ground truth."""
    if opts.targets_csv:
        raw = match_ids(ids, read_mapping(opts.targets_csv, "value"))
        if all(v is None for v in raw):
            raise DataError(f"{opts.targets_csv}: no row names an image of this dataset (e.g. {ids[0]!r})")
        try:
            return {Path(opts.targets_csv).stem: np.array([np.nan if v in (None, "") else float(v) for v in raw])}
        except ValueError as err:
            raise DataError(f"{opts.targets_csv}: every value must be a number ({err})") from None
    first = per_image.drop_duplicates("image_id").set_index("image_id")
    return {c: first[c].reindex(ids).to_numpy(np.float64) for c in ("n_objects", "complexity")
            if c in first and first[c].notna().any()}


def _regression(store, per_image, ids, budgets, opts, base, seed):
    """Ridge probes of each continuous target from each feature kind and budget: R² and MAE."""
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    for name, t_all in _targets(ids, per_image, opts).items():
        idx = np.flatnonzero(np.isfinite(t_all))
        if len(idx) < 2 * CV_FOLDS:
            info[f"regression_{name}"] = f"skipped: {len(idx)} images with a value"
            continue
        t = t_all[idx]
        tr, te = random_split(len(idx), opts.test_fraction, seed)
        info[f"regression_{name}"] = {"n_train": len(tr), "n_test": len(te)}
        for kind in opts.kinds:
            for b in ([max(budgets)] if kind in BUDGET_FREE else budgets):
                x = load_features(store, kind, b)[idx]
                model = fit_regressor(x[tr], t[tr])
                pred = model.predict(x[te])
                row = {"budget": None if kind in BUDGET_FREE else b,
                       "condition": format_condition(feature=kind, target=name, alpha=model.chosen_alpha)}
                lo, hi = bootstrap_ci(r2, (t[te], pred), seed=seed, n_boot=opts.n_boot)
                rows.append({**base, **row, "metric": "r2", "value": r2(t[te], pred), "n": len(te),
                             "ci_low": lo, "ci_high": hi})
                rows.append(_ci_row(base, np.abs(t[te] - pred), seed=seed, n_boot=opts.n_boot, metric="mae", **row))
    return rows, info


def write_figures(run_dir: Any, metrics: pd.DataFrame, per_img: pd.DataFrame, budgets: list[int], *,
                  title: str = "") -> None:
    """Probe accuracy (and regression) against tokens, and the histogram of selected budgets."""
    if not plots.drawing():
        return
    plots.save(plots_tokens.probe_accuracy_vs_tokens(metrics, title=title), run_dir.figures,
               "probe_accuracy_vs_tokens")
    if (metrics["metric"] == "r2").any():
        plots.save(plots_tokens.regression_vs_tokens(metrics, title=title), run_dir.figures, "regression_vs_tokens")
    sel_cols = [c for c in per_img.columns if c.startswith("selected_tokens_")]
    if sel_cols:
        fig = plots_tokens.selected_tokens_hist(per_img[per_img["split"] == "test"], sel_cols, budgets,
                                                fallback={"selected_tokens_l1": "l1_fallback"}, title=title)
        plots.save(fig, run_dir.figures, "selected_tokens")


def run(req: Any, opts: ProbeOptions, *, seed: int, device: str, offline: bool, results_dir: Any,
        run_id: str | None = None, overwrite: bool = False, reuse_finished: bool = False, out: Any = None, progress: bool = True) -> tuple[Any, Any]:
    """`alit-eval downstream` end to end; returns ``(run_dir, metrics)``."""
    unknown = [k for k in (*opts.kinds, opts.select_kind) if k not in FEATURE_KINDS]
    if unknown:
        raise AlitEvalError(f"unknown feature kind(s) {unknown}; choose from {', '.join(FEATURE_KINDS)}")
    if not 0.05 <= opts.test_fraction <= 0.8:
        raise AlitEvalError(f"--test-fraction must be in [0.05, 0.8], got {opts.test_fraction}")
    files = {}
    for key in ("labels_csv", "targets_csv"):
        path = getattr(opts, key)
        if path is not None:
            if not Path(path).is_file():
                raise DataError(f"{path} not found (expected a CSV with rows image,value)")
            files[key] = {"name": Path(path).name, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    config_opts = {k: v for k, v in vars(opts).items() if k not in ("labels_csv", "targets_csv")}
    p = prepare(replace(req, fid=False, capture=captures_for(opts.kinds, opts.recon_view),
                        extra={**req.extra, "probe": {**config_opts, **files}}),
                seed=seed, device=device, offline=offline, progress=progress)
    if not FeatureTap.supports_2d(p.tokenizer):
        dropped = [k for k in opts.kinds if k in ("2d", "2d+first", "base2d")]
        log.warning("this tokenizer exposes no encoder 2D tokens; skipping feature kinds %s", dropped)
        opts = replace(opts, kinds=tuple(k for k in opts.kinds if k not in dropped))
        p.sweep.capture = captures_for(opts.kinds, opts.recon_view)
        p.config["capture"] = sorted(p.sweep.capture)
    tokenizer = p.tokenizer
    if TAP_CAPTURES & set(p.sweep.capture):
        tokenizer = FeatureTap(p.tokenizer, recon_view=opts.recon_view, rounding=p.sweep.rounding)
    with CommandRun("downstream", p.config, SweepPlan.of(p), results_dir=results_dir, run_id=run_id,
                    overwrite=overwrite, reuse_finished=reuse_finished, out=out) as run:
        inputs = run.sweep(tokenizer=tokenizer)
        result = inputs.result
        metrics, per_img, per_budget, info = probe_tables(result.store, result.per_image, result.budgets, opts,
                                                          seed=seed, dataset=inputs.dataset,
                                                          preprocess=inputs.preprocess)
        table = result.per_image.merge(per_img, on="image_id", how="left").merge(
            per_budget, on=["image_id", "budget"], how="left")
        run.dir.write_metrics(metrics)
        run.dir.write_per_image(table)
        write_figures(run.dir, metrics, per_img, result.budgets, title=figure_title(inputs, "downstream"))
        run.finish(seed, {"probe": info})
    return run.dir, metrics
