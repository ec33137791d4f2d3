"""``alit-eval familiarity``: do unfamiliar (out-of-distribution) images need more tokens?"""

from __future__ import annotations

from typing import List, Optional

import typer

from alit_eval.cli.console import print_results
from alit_eval.cli.options import (
    Criterion, Fallback, MEASURE_OPTIONS, NBoot, SweepArgs, Thresholds, parse_list, sweep_command)


@sweep_command(MEASURE_OPTIONS)
def familiarity(
    ctx: typer.Context,
    sweep: SweepArgs,
    data: Optional[List[str]] = typer.Option(
        None, "--data",
        help="A dataset as [NAME=]SRC (folder, file list, glob or demo split); repeat it. The first is the "
             "reference. Default: demo-scenes, demo-unfamiliar, demo-natural."),
    from_run: Optional[List[str]] = typer.Option(
        None, "--from-run",
        help="Reuse a finished sweep as [NAME=]RUN_DIR (a fid/allocate/... run folder, or a familiarity run for "
             "all its datasets); repeatable; comes after the --data datasets."),
    thresholds: Thresholds = "auto",
    criterion: Criterion = "l1",
    fallback: Fallback = "min-error",
    n_boot: NBoot = 1000,
) -> None:
    """Compare datasets at every budget: quality-vs-tokens curves, rFID, required tokens per image, and
    the token difference to the reference (bootstrap CI, Mann–Whitney U).

    Examples:

        alit-eval familiarity

        alit-eval familiarity --data in=demo-scenes --data ood=demo-unfamiliar --data demo-probes

        alit-eval familiarity --ckpt alit_small.vqgan_quantized.in100 --data in100=/data/in100/val \\
            --data coco=/data/coco/val2017 --limit 1000 --thresholds 0.05,0.07
    """
    from alit_eval.analysis.familiarity import DEFAULT_DATASETS, parse_datasets, run

    specs = parse_datasets(list(data or ([] if from_run else DEFAULT_DATASETS)), list(from_run or []))
    run_dir, _, comp = run(sweep.config, **sweep.run_kwargs(), datasets=specs,
                           thresholds=parse_list(thresholds, str, option="--thresholds", what="a threshold"),
                           criterion=criterion, fallback=fallback, n_boot=n_boot)
    print_comparisons(comp, specs[0].name)
    print_results(run_dir)


def print_comparisons(comp, reference: str) -> None:
    """Required-token difference of each dataset to the reference, per threshold."""
    from rich.console import Console
    from rich.table import Table

    d = comp[comp["quantity"] == "tokens"]
    out = Table(title=f"required tokens vs {reference} (mean difference, 95% CI, Mann-Whitney p)")
    for c in ("dataset", "threshold", f"mean {reference}", "mean", "diff [CI]", "p"):
        out.add_column(c, justify="right")
    for r in d.itertuples():
        out.add_row(r.dataset, f"{r.threshold:.4g}", f"{r.mean_reference:.2f}", f"{r.mean:.2f}",
                    f"{r.diff:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]", f"{r.p_value:.2g}")
    Console().print(out)
