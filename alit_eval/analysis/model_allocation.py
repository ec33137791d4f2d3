"""Allocation by a criterion the tokenizer applies itself (KARL's ε mode), for `alit-eval allocate`.

A family lists such criteria in `Family.model_criteria` (criterion name -> the inference option each
threshold sets). For every threshold t the tokenizer is run once at its largest requested budget with
that option set to t; it keeps the tokens it needs (`tokens_used` in the per-image table, e.g.
KARL's non-halted slots), so the allocation is the model's own choice, not a search over budgets.
Each threshold is one resumable sweep in ``sweeps/<option>_<t>/``; its quality (and rFID with
Inception features) is that of the reconstructions the model made under the condition.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import pandas as pd

from alit_eval.analysis.quality import summarize
from alit_eval.analysis.skeleton import CommandRun
from alit_eval.analysis.stats import bootstrap_mean_ci
from alit_eval.engine.plan import dataset_label
from alit_eval.engine.prepare import prepare
from alit_eval.engine.sweep import run_sweep
from alit_eval.errors import AlitEvalError
from alit_eval.results.atomic import write_csv, write_parquet
from alit_eval.results.schema import format_condition, metrics_frame
from alit_eval.tokenizers.families import FAMILIES, family_of

QUALITY = ("l1", "mse", "psnr", "ssim", "lpips")


def model_criteria() -> dict[str, list[str]]:
    """Criterion name -> the families whose model applies it."""
    out: dict[str, list[str]] = {}
    for name, fam in FAMILIES.items():
        for criterion in fam.model_criteria:
            out.setdefault(criterion, []).append(name)
    return out


def run(req: Any, *, criterion: str, thresholds: Sequence[str], from_run: str | None = None, seed: int = 0,
        device: str = "cpu", offline: bool = False, results_dir: Any = "results", run_id: str | None = None,
        overwrite: bool = False, progress: bool = True) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    """`alit-eval allocate --criterion <model criterion>`; returns ``(run_dir, metrics, selection)``.

    Raises:
        AlitEvalError: ``--from-run`` (each threshold needs its own pass), non-numeric thresholds, or a
            checkpoint whose family does not apply this criterion (one line naming the families that do).
    """
    if from_run is not None:
        raise AlitEvalError(f"--criterion {criterion} runs the tokenizer once per threshold; it cannot reuse "
                            "--from-run (drop it)")
    try:
        values = [float(t) for t in thresholds]
    except ValueError:
        raise AlitEvalError(f"--criterion {criterion} takes numeric --thresholds (e.g. 0.03,0.05,0.09); got "
                            f"{','.join(thresholds)}") from None
    p = prepare(req, seed=seed, device=device, offline=offline, progress=progress)
    fam = family_of(p.tokenizer)
    option = fam.model_criteria.get(criterion)
    if option is None:
        owners = ", ".join(model_criteria().get(criterion, [])) or "no family"
        raise AlitEvalError(f"--criterion {criterion} is applied by the tokenizer itself, which only {owners} "
                            f"does; this checkpoint is {fam.title} (use l1, psnr, ... instead)")
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
            cond = format_condition(criterion=criterion, threshold=f"{t:g}")
            fixed = summarize(result, command="allocate", dataset=dataset, preprocess=p.source.preprocess,
                              seed=seed, fid=bool(sweep.fid))
            rows += [{**r, "condition": ";".join(filter(None, (r["condition"], cond)))}
                     for r in fixed.to_dict("records")]
            tokens = per["tokens_used"].to_numpy(dtype=np.float64)
            lo, hi = bootstrap_mean_ci(tokens, seed=seed)
            rows.append({"command": "allocate", "dataset": dataset, "preprocess": p.source.preprocess,
                         "budget": budget, "metric": "tokens", "value": float(tokens.mean()), "n": int(tokens.size),
                         "ci_low": lo, "ci_high": hi, "condition": cond})
            picks.append(per.assign(threshold=t, criterion=criterion, tokens=per["tokens_used"]))
            means = {m: float(per[m].mean()) for m in QUALITY if m in per and per[m].notna().any()}
            rfid = fixed[fixed["metric"] == "rfid"]["value"]
            summary.append({"criterion": criterion, "threshold": t, "budget": budget,
                            "mean_tokens": float(tokens.mean()), "median_tokens": float(np.median(tokens)),
                            **{f"adaptive_{m}": v for m, v in means.items()},
                            "variable_rfid": float(rfid.iloc[0]) if len(rfid) else float("nan")})
        metrics = metrics_frame(rows)
        selection = pd.concat(picks, ignore_index=True)
        run.dir.write_metrics(metrics)
        write_parquet(selection, run.dir.file("selection.parquet"))
        write_csv(pd.DataFrame(summary), run.dir.file("allocation_summary.csv"))
        run.finish(seed, {"checkpoint": p.checkpoint, "dataset": dataset, "criterion": criterion,
                          "selection_rule": f"the tokenizer's own choice with {option} = threshold at {budget} slots",
                          "thresholds": values, "budget": budget}, device=p.sweep.device, standard=False)
    return run.dir, metrics, selection
