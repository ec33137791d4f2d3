"""Allocation by a criterion the tokenizer applies itself (KARL's ε mode), for `alit-eval allocate`.

A family lists such criteria in `Family.model_criteria` (criterion name -> the inference option each
threshold sets). For every threshold t the tokenizer is run once at its largest requested budget with
that option set to t; it keeps the tokens it needs (`tokens_used` in the per-image table, e.g.
KARL's non-halted slots), so the allocation is the model's own choice, not a search over budgets.
Each threshold is one resumable sweep in ``sweeps/<option>_<t>/``; its quality (and rFID with
Inception features) is that of the reconstructions the model made under the condition.

It writes what every allocation writes (``allocation_summary.csv``, ``selected_budgets.csv``,
``selection.parquet``, ``per_image.parquet``, the figures and the gallery), and checks that the
model met its condition: a threshold whose achieved mean L1 lies more than `MISS_TOLERANCE` (relative)
away from the target is flagged (``target_missed`` and a console warning), since the tokens it kept
then do not answer "how many tokens for this error".
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import pandas as pd

from alit_eval.analysis import tokens as received
from alit_eval.analysis.quality import summarize
from alit_eval.analysis.skeleton import CommandRun
from alit_eval.analysis.stats import bootstrap_mean_ci
from alit_eval.engine.plan import dataset_label
from alit_eval.engine.prepare import prepare
from alit_eval.engine.sweep import run_sweep
from alit_eval.errors import AlitEvalError
from alit_eval.results.atomic import write_csv, write_parquet
from alit_eval.results.labels import checkpoint_of, data_label, run_title
from alit_eval.results.schema import format_condition, metrics_frame
from alit_eval.tokenizers.families import FAMILIES
from alit_eval.tokenizers.family_queries import family_of

QUALITY = ("l1", "mse", "psnr", "ssim", "lpips")
MISS_TOLERANCE = 0.5  # achieved L1 more than 50 % above or below the target: the condition was not met


def target_check(summary: pd.DataFrame) -> list[str]:
    """Mark each threshold whose achieved mean L1 misses its target; returns one warning line per miss."""
    achieved = summary["adaptive_l1"] if "adaptive_l1" in summary else pd.Series(np.nan, index=summary.index)
    rel = (achieved - summary["threshold"]) / summary["threshold"]
    summary["target_missed"] = rel.abs() > MISS_TOLERANCE
    summary["target_relative_error"] = rel
    return [f"warning: at {r.criterion} = {r.threshold:g} the achieved mean L1 is {a:.4g} ({100 * e:+.0f} % from the "
            f"target): the model did not meet its condition, so its tokens are not the tokens for that error"
            for r, a, e, miss in zip(summary.itertuples(), achieved, rel, summary["target_missed"]) if miss]


def _histogram(selection: pd.DataFrame) -> pd.DataFrame:
    """Share of images per number of tokens kept, per threshold (``selected_budgets.csv``)."""
    rows = []
    for t, g in selection.groupby("threshold", sort=True):
        for b, share in g["tokens"].astype(int).value_counts(normalize=True).sort_index().items():
            rows.append({"threshold": float(t), "budget": int(b), "share": float(share), "n": len(g)})
    return pd.DataFrame(rows)


def _figures(run: Any, p: Any, selection: pd.DataFrame, summary: pd.DataFrame, hist: pd.DataFrame,
             criterion: str, title: str, gallery: bool) -> list[str]:
    """The figures and gallery of an allocation (as `allocate.write_figures`); returns notes."""
    import logging
    from pathlib import Path

    from alit_eval.analysis.selection_summary import save_images
    from alit_eval.results import plots, plots_allocation as pa

    drawing = plots.drawing()
    if drawing:
        plots.save(pa.tokens_vs_threshold(summary, criterion, title=title), run.dir.figures, "tokens_vs_threshold")
        plots.save(pa.budget_histogram(hist, title=title), run.dir.figures, "selected_budget_histogram")
    if not gallery:
        return []
    try:
        thr = float(summary["threshold"].iloc[len(summary) // 2])
        g = selection[selection["threshold"] == thr].sort_values(["tokens", "l1", "index"], kind="stable")
        pick = np.unique(np.linspace(0, len(g) - 1, min(16, len(g))).round().astype(int))
        table = g.iloc[pick].reset_index(drop=True)
        table = table.assign(selected_budget=table["tokens"].astype(int),
                             tokens_label=[f"{int(t)} tok" for t in table["tokens"]])
        table = save_images(p.source, table[["image_id", "index", "threshold", "selected_budget", "tokens_label",
                                             "l1"]], run.dir.path / "gallery")
        table = table.assign(path=[str(Path(x).relative_to(run.dir.path)) for x in table["path"]])
        write_csv(table, run.dir.path / "gallery" / "gallery.csv")
        if drawing:
            plots.save(pa.gallery(table, run.dir.path, "l1", thr, title=title), run.dir.figures, "gallery")
    except Exception as exc:  # a moved dataset must not lose the numbers already written
        logging.getLogger(__name__).warning("gallery skipped: %s", exc)
        return [f"gallery skipped: {exc}"]
    return []


def model_criteria() -> dict[str, list[str]]:
    """Criterion name -> the families whose model applies it."""
    out: dict[str, list[str]] = {}
    for name, fam in FAMILIES.items():
        for criterion in fam.model_criteria:
            out.setdefault(criterion, []).append(name)
    return out


def _numeric_thresholds(criterion: str, thresholds: Sequence[str], from_run: str | None) -> list[float]:
    """The thresholds as numbers; refuses --from-run (each threshold needs its own pass)."""
    if from_run is not None:
        raise AlitEvalError(f"--criterion {criterion} runs the tokenizer once per threshold; it cannot reuse "
                            "--from-run (drop it)")
    try:
        return [float(t) for t in thresholds]
    except ValueError:
        raise AlitEvalError(f"--criterion {criterion} takes numeric --thresholds (e.g. 0.03,0.05,0.09); got "
                            f"{','.join(thresholds)}") from None


def _criterion_option(fam: Any, criterion: str, values: list[float]) -> tuple[str, list[float]]:
    """The inference option the family sets for `criterion`, and the thresholds checked against its bounds."""
    option = fam.model_criteria.get(criterion)
    if option is None:
        owners = ", ".join(model_criteria().get(criterion, [])) or "no family"
        raise AlitEvalError(f"--criterion {criterion} is applied by the tokenizer itself, which only {owners} "
                            f"does; this checkpoint is {fam.title} (use l1, psnr, ... instead)")
    declared = fam.option(option)
    if declared is not None:  # each threshold is a value of the option: its declared bounds apply
        values = [declared.check(t, owner=f"--thresholds of --criterion {criterion}") for t in values]
    return option, values


def _threshold_rows(result: Any, t: float, criterion: str, budget: int, dataset: str, preprocess: str,
                    seed: int, fid: bool) -> tuple[list[dict[str, Any]], pd.DataFrame, dict[str, Any]]:
    """One threshold's sweep as metric rows (quality + tokens received), per-image picks and a summary row."""
    per = result.per_image
    cond = format_condition(criterion=criterion, threshold=f"{t:g}")
    fixed = summarize(result, command="allocate", dataset=dataset, preprocess=preprocess, seed=seed, fid=fid)
    rows = [{**r, "condition": ";".join(filter(None, (r["condition"], cond)))} for r in fixed.to_dict("records")]
    tokens = received.per_image(per)
    lo, hi = bootstrap_mean_ci(tokens, seed=seed)
    rows.append({"command": "allocate", "dataset": dataset, "preprocess": preprocess,
                 "budget": budget, "metric": "tokens", "value": float(tokens.mean()), "n": int(tokens.size),
                 "ci_low": lo, "ci_high": hi, "condition": cond})
    pick = per.assign(threshold=t, criterion=criterion, tokens=tokens)
    means = {m: float(per[m].mean()) for m in QUALITY if m in per and per[m].notna().any()}
    rfid = fixed[fixed["metric"] == "rfid"]["value"]
    row = {"criterion": criterion, "threshold": t, "budget": budget, "n": int(tokens.size),
           "mean_tokens": float(tokens.mean()), "mean_tokens_ci_low": lo, "mean_tokens_ci_high": hi,
           "median_tokens": float(np.median(tokens)), "censored_share": 0.0,
           **{f"adaptive_{m}": v for m, v in means.items()},
           "variable_rfid": float(rfid.iloc[0]) if len(rfid) else float("nan")}
    return rows, pick, row


def run(req: Any, *, criterion: str, thresholds: Sequence[str], from_run: str | None = None, seed: int = 0,
        device: str = "cpu", offline: bool = False, results_dir: Any = "results", run_id: str | None = None,
        overwrite: bool = False, progress: bool = True, gallery: bool = True,
        figures: bool = True) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    """`alit-eval allocate --criterion <model criterion>`; returns ``(run_dir, metrics, selection)``.

    Raises:
        AlitEvalError: ``--from-run`` (each threshold needs its own pass), non-numeric thresholds, or a
            checkpoint whose family does not apply this criterion (one line naming the families that do).
    """
    values = _numeric_thresholds(criterion, thresholds, from_run)
    p = prepare(req, seed=seed, device=device, offline=offline, progress=progress)
    option, values = _criterion_option(family_of(p.tokenizer), criterion, values)
    budget = max(p.sweep.budgets)
    dataset = dataset_label(p.source.name, p.source.kind)
    config = {**p.config, "budgets": [budget],
              "allocate": {"criterion": criterion, "option": option, "thresholds": values, "budget": budget}}
    config.pop("options", None)  # each threshold sets the option; the sweeps record their own value
    with CommandRun("allocate", config, results_dir=results_dir, run_id=run_id, overwrite=overwrite) as run:
        rows, picks, summary = [], [], []
        for t in values:
            sweep = replace(p.sweep, budgets=[budget], **{option: t})
            result = run_sweep(p.tokenizer, p.source, sweep, run.dir.path / "sweeps" / f"{option}_{t:g}")
            per = result.per_image
            threshold_rows, pick, row = _threshold_rows(result, t, criterion, budget, dataset, p.source.preprocess,
                                                        seed, bool(sweep.fid))
            rows += threshold_rows
            picks.append(pick)
            summary.append(row)
        summary = pd.DataFrame(summary)
        warnings = target_check(summary)
        base = {"command": "allocate", "dataset": dataset, "preprocess": p.source.preprocess, "metric": "target_missed"}
        rows += [{**base, "value": float(m), "n": int(r["n"]),
                  "condition": format_condition(criterion=criterion, threshold=f"{r['threshold']:g}")}
                 for r, m in zip(summary.to_dict("records"), summary["target_missed"])]
        metrics = metrics_frame(rows)
        selection = pd.concat(picks, ignore_index=True)
        hist = _histogram(selection)
        run.dir.write_metrics(metrics)
        # one row per image and threshold: the image id carries the threshold so the key stays unique
        run.dir.write_per_image(selection.assign(source_id=selection["image_id"],
                                                 image_id=[f"{option}={t:g}/{i}" for t, i in
                                                           zip(selection["threshold"], selection["image_id"])]))
        write_parquet(selection, run.dir.file("selection.parquet"))
        write_csv(summary, run.dir.file("allocation_summary.csv"))
        write_csv(hist, run.dir.file("selected_budgets.csv"))
        title = run_title(checkpoint_of(p.checkpoint), data_label(p.source.name), int(per["image_id"].nunique()),
                          "allocate")
        notes = _figures(run, p, selection, summary, hist, criterion, title, gallery) if figures else []
        run.finish(seed, {"checkpoint": p.checkpoint, "dataset": dataset, "criterion": criterion,
                          "selection_rule": f"the tokenizer's own choice with {option} = threshold at {budget} slots",
                          "thresholds": values, "budget": budget, "tokens": received.DEFINITION,
                          "target_tolerance": MISS_TOLERANCE, "notes": notes + warnings},
                   device=p.sweep.device, standard=False)
    return run.dir, metrics, selection
