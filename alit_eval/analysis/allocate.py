"""`alit-eval allocate`: per-image budgets at several thresholds and what they cost.

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

The selection rule is `alit_eval.analysis.token_selection`, the summaries `selection_summary`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from alit_eval.analysis import token_selection as ts, tokens as received
from alit_eval.analysis.quality import summarize
from alit_eval.analysis.selection_summary import (
    fixed_curve, gallery_table, save_images, shuffled_budgets, summarize_selection, variable_fids_of,
)
from alit_eval.analysis.signal import as_dict as signal_dict, warn_if_flat
from alit_eval.analysis.skeleton import CommandRun, figure_title
from alit_eval.engine.plan import has_features, plan_sweep
from alit_eval.results import plots, plots_allocation as pa
from alit_eval.results.atomic import write_csv, write_parquet
from alit_eval.results.schema import metrics_frame


def write_figures(run_dir: Any, inputs: Any, selection: pd.DataFrame, summary: pd.DataFrame,
                  hist: pd.DataFrame, criterion: str, *, gallery: bool = True, figures: bool = True) -> list[str]:
    """The figures and the gallery (images + ``gallery.csv``); returns notes for meta.json."""
    column = ts.CRITERIA[criterion][0]
    title = figure_title(inputs, "allocate")
    figures = figures and plots.drawing()
    if figures:
        plots.save(pa.tokens_vs_threshold(summary, criterion, title=title), run_dir.figures, "tokens_vs_threshold")
        plots.save(pa.budget_histogram(hist, title=title), run_dir.figures, "selected_budget_histogram")
        plots.save(pa.adaptive_vs_fixed(fixed_curve(inputs.result.per_image, column), summary, column, title=title),
                   run_dir.figures, "adaptive_vs_fixed")
    if not gallery:
        return []
    try:
        thr = float(summary["threshold"].iloc[len(summary) // 2])
        table = save_images(inputs.source(), gallery_table(selection, thr), run_dir.path / "gallery")
        table = table.assign(path=[str(Path(p).relative_to(run_dir.path)) for p in table["path"]])
        write_csv(table, run_dir.path / "gallery" / "gallery.csv")
        if figures:
            plots.save(pa.gallery(table, run_dir.path, column, thr, title=title), run_dir.figures, "gallery")
    except Exception as exc:  # a moved dataset must not lose the numbers already written
        logging.getLogger(__name__).warning("gallery skipped: %s", exc)
        return [f"gallery skipped: {exc}"]
    return []


def run(req: Any, *, from_run: str | None, thresholds: Sequence[str], criterion: str = "l1",
        fallback: str = "min-error", batch_criterion: int | None = None, gallery: bool = True, seed: int = 0,
        device: str = "cpu", offline: bool = False, results_dir: Any = "results", run_id: str | None = None,
        overwrite: bool = False, reuse_finished: bool = False, progress: bool = True, on_batch: Any = None,
        figures: bool = True) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    """`alit-eval allocate` end to end; returns ``(run_dir, metrics, selection)``.

    ``figures=False`` writes every table but draws no figure (scripted use).
    """
    from alit_eval.analysis import model_allocation

    if criterion not in ts.CRITERIA and criterion in model_allocation.model_criteria():
        # the tokenizer chooses its own token count under the condition (KARL's epsilon)
        return model_allocation.run(req, criterion=criterion, thresholds=thresholds, from_run=from_run, seed=seed,
                                    device=device, offline=offline, results_dir=results_dir, run_id=run_id,
                                    overwrite=overwrite, progress=progress, gallery=gallery, figures=figures)
    ts.criterion_spec(criterion)
    plan = plan_sweep(req, from_run, seed=seed, device=device, offline=offline, progress=progress)
    config = {**plan.config, "allocate": {"criterion": criterion, "thresholds": [str(t) for t in thresholds],
                                          "fallback": fallback, "batch_criterion": batch_criterion,
                                          "fid": bool(req.fid)}}
    with CommandRun("allocate", config, plan, results_dir=results_dir, run_id=run_id, overwrite=overwrite, reuse_finished=reuse_finished) as run:
        inputs = run.sweep(on_batch=on_batch)
        result, per_image = inputs.result, inputs.result.per_image
        resolved = ts.resolve_thresholds(thresholds, per_image, criterion)
        selection = ts.selection_table(per_image, resolved, criterion=criterion, fallback=fallback,
                                       batch_size=batch_criterion)
        selection["tokens_received"] = received.at_selection(selection, per_image)  # what the decoder gets
        signal = warn_if_flat(per_image, criterion)  # a metric flat across budgets makes every number below moot
        fid = bool(req.fid) and has_features(result.store, result.budgets)
        notes = ["no Inception features in the sweep: FID skipped"] if req.fid and not fid else []
        metrics, summary, hist = _tables(inputs, selection, seed=seed, fid=fid)
        run.dir.write_metrics(metrics)
        run.dir.write_per_image(per_image)
        write_parquet(selection, run.dir.file("selection.parquet"))
        write_csv(summary.assign(**signal.columns()), run.dir.file("allocation_summary.csv"))
        write_csv(hist, run.dir.file("selected_budgets.csv"))
        notes += write_figures(run.dir, inputs, selection, summary, hist, criterion, gallery=gallery,
                               figures=figures)
        run.finish(seed, {
            "dataset": inputs.dataset, "thresholds": [{"spec": s, "value": v} for s, v in resolved],
            "criterion": criterion, "fallback": fallback, "batch_criterion": batch_criterion,
            "tokens": received.DEFINITION, "budget_signal": signal_dict(signal),
            "selection_rule": ("official batch mean over groups of %d consecutive images" % batch_criterion
                               if batch_criterion else "per image (batch-independent)"),
            "fid_reference": "originals" if fid else None, "notes": notes,
        })
    return run.dir, metrics, selection


def _tables(inputs: Any, selection: pd.DataFrame, *, seed: int,
            fid: bool) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """metrics.csv (fixed budgets + the selection's rows), the per-threshold summary and the histogram."""
    result = inputs.result
    fixed = summarize(result, command="allocate", dataset=inputs.dataset, preprocess=inputs.preprocess,
                      seed=seed, fid=fid)
    fids, shuffled = variable_fids_of(result.store, [selection, shuffled_budgets(selection, seed)]) if fid \
        else (None, None)
    resize = result.info.get("inception", {}).get("resize", "tf1")
    rows, summary, hist = summarize_selection(
        selection, result.per_image, command="allocate", dataset=inputs.dataset, preprocess=inputs.preprocess,
        seed=seed, fid=fids, fid_shuffled=shuffled, fid_condition={"reference": "originals", "resize": resize},
        tokens="tokens_received")
    return metrics_frame([*fixed.to_dict("records"), *rows]), summary, hist
