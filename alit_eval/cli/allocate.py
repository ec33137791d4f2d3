"""``alit-eval allocate``: per-image token budgets under a token selection criterion (TSC)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from alit_eval.cli.console import print_results
from alit_eval.cli.options import (
    Criterion, Fallback, FromRun, MEASURE_OPTIONS, SweepArgs, Thresholds, check_threshold, parse_list, sweep_command)

# KARL Tab. 2/6 thresholds; 0.07 is the official default
DEFAULT_THRESHOLDS = {"l1": "0.03,0.05,0.07,0.09", "official-l1": "0.03,0.05,0.07,0.09",
                      "epsilon": "0.03,0.05,0.09"}  # epsilon: the KARL paper's Tab. 2 conditions
QUANTILE_THRESHOLDS = "q0.25,q0.5,q0.75"


@sweep_command(MEASURE_OPTIONS)
def allocate(
    ctx: typer.Context,
    sweep: SweepArgs,
    thresholds: Thresholds = None,
    criterion: Criterion = "l1",
    fallback: Fallback = "min-error",
    batch_criterion: Optional[int] = typer.Option(
        None, "--official-batch-criterion", min=1,
        help="Apply the official batch-mean rule to groups of N consecutive images (default: per image)."),
    from_run: FromRun = None,
    no_gallery: bool = typer.Option(False, "--no-gallery", help="Skip the gallery of images sorted by budget."),
) -> None:
    """Select each image's token budget (smallest budget whose error is below a threshold) at several
    thresholds; report tokens used, censoring, adaptive quality, variable-token FID (with a shuffled-budget
    control) and token savings.

    Selection is per image (batch-independent); the official encode() averages L1 over the whole
    batch, which --official-batch-criterion N reproduces. Without --thresholds: 0.03,0.05,0.07,0.09 for
    l1 and official-l1 (KARL Tab. 2/6; 0.07 is the official default), 0.03,0.05,0.09 for epsilon,
    q0.25,q0.5,q0.75 otherwise.

    Examples:

        alit-eval allocate

        alit-eval allocate --ckpt alit_small.vqgan_quantized.in100 --data /data/in100/val --thresholds 0.05,0.07

        alit-eval allocate --from-run results/fid/<run_id> --criterion psnr --thresholds 20,25
    """
    specs = parse_list(thresholds or DEFAULT_THRESHOLDS.get(criterion, QUANTILE_THRESHOLDS), check_threshold,
                       option="--thresholds", what="a number, auto or qP (0 <= P <= 1)")
    from alit_eval.analysis.allocate import run  # after the checks: a typo fails before torch is imported

    run_dir, _, _ = run(sweep.config, **sweep.run_kwargs(), reuse_finished=True, from_run=str(from_run) if from_run else None,
                        thresholds=specs, criterion=criterion, fallback=fallback, batch_criterion=batch_criterion,
                        gallery=not no_gallery)
    print_summary(run_dir.path / "allocation_summary.csv", criterion)
    import pandas as pd

    from alit_eval.analysis.signal import flat_note

    summary = pd.read_csv(run_dir.path / "allocation_summary.csv")
    note = flat_note(summary)
    if note:
        typer.secho(note, fg="red", err=True)
    if "target_missed" in summary:  # --criterion epsilon: the model's own choice missed its target error
        from alit_eval.analysis.model_allocation import target_check

        for line in target_check(summary):
            typer.secho(line, fg="red", err=True)
    print_results(run_dir)


def print_summary(path: Path, criterion: str) -> None:
    """Print one row per threshold from ``allocation_summary.csv``."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from alit_eval.analysis.token_selection import CRITERIA

    s = pd.read_csv(path)
    table = Table(title=f"token allocation ({criterion} criterion)")
    cols = [("threshold", "threshold"), ("mean_tokens", "mean tok"), ("median_tokens", "median"),
            ("censored_share", "censored"),
            (f"adaptive_{CRITERIA[criterion][0]}" if criterion in CRITERIA else "adaptive_l1",
             criterion if criterion in CRITERIA else "l1"),
            ("variable_rfid", "var. rFID"), ("shuffled_rfid", "shuffled rFID"),
            ("fixed_budget_equivalent", "fixed equiv."), ("token_saving_pct", "saving %")]
    cols = [(c, name) for c, name in cols if c in s]
    for _, name in cols:
        table.add_column(name, justify="right")
    def cell(v) -> str:
        if isinstance(v, float):
            return "-" if v != v else f"{v:.4g}"  # NaN: e.g. no fixed budget reaches the adaptive quality
        return str(v)

    for _, row in s.iterrows():
        table.add_row(*[cell(row[c]) for c, _ in cols])
    Console().print(table)
