"""``alit-eval entropy-correlation``: does the number of tokens an image needs track its complexity?"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from alit_eval.cli.console import print_results
from alit_eval.cli.options import (
    Criterion, Fallback, FromRun, LPIPS_OPTIONS, NBoot, SweepArgs, Thresholds, parse_list, sweep_command)


@sweep_command(LPIPS_OPTIONS)
def entropy_correlation(
    ctx: typer.Context,
    sweep: SweepArgs,
    thresholds: Thresholds = "auto",
    criterion: Criterion = "l1",
    fallback: Fallback = "min-error",
    scores: Optional[Path] = typer.Option(
        None, "--scores", help="CSV with columns image,score (e.g. SAVOIAS human ratings) to correlate too."),
    control: Optional[str] = typer.Option(
        None, "--control", help="Also report partial correlations controlling for this measure, e.g. png_bpp."),
    n_boot: NBoot = 1000,
    methods: str = typer.Option("spearman,kendall,pearson", "--methods",
                                help="Correlations to report (Kendall's bootstrap is the slow one on large sets)."),
    from_run: FromRun = None,
    fid: bool = typer.Option(False, "--fid",
                             help="Also store Inception features in the sweep (for a later --from-run)."),
) -> None:
    """Correlate image complexity (PNG/JPEG bits per pixel, entropy, gradients, edges, high-frequency
    energy, ground truth or --scores) with the tokens each image needs and with its L1 per budget.

    Spearman, Kendall and Pearson with bootstrap 95% CIs and p-values; censored images count as the
    largest budget, with a sensitivity analysis that excludes them.

    Examples:

        alit-eval entropy-correlation

        alit-eval entropy-correlation --ckpt alit_small.vqgan_quantized.in100 --data /data/savoias/Scenes \\
            --scores savoias_scenes.csv --thresholds 0.05,0.07 --control png_bpp
    """
    from alit_eval.analysis.entropy_correlation import run

    sweep.config.fid = fid
    specs = parse_list(thresholds, str, option="--thresholds", what="a threshold")
    run_dir, table = run(sweep.config, **sweep.run_kwargs(), reuse_finished=True, from_run=str(from_run) if from_run else None,
                         thresholds=specs, criterion=criterion, fallback=fallback,
                         scores=str(scores) if scores else None, control=control, n_boot=n_boot,
                         methods=parse_list(methods, str, option="--methods", what="a method"))
    print_tokens_table(table)
    from alit_eval.analysis.signal import flat_note

    note = flat_note(table)
    if note:
        typer.secho(note, fg="red", err=True)
    print_results(run_dir)


def print_tokens_table(table) -> None:
    """Spearman rho of every measure with the required tokens (censored as the largest budget)."""
    from rich.console import Console
    from rich.table import Table

    method = "spearman" if "spearman" in set(table["method"]) else str(table["method"].iloc[0])
    d = table[(table["target"] == "tokens") & (table["censored"] == "as-max") & (table["method"] == method)
              & (table["control"] == "")]
    out = Table(title=f"{method}: complexity measure vs required tokens (95% CI, p)")
    out.add_column("measure")
    out.add_column("threshold", justify="right")
    out.add_column("estimate [CI]", justify="right")
    out.add_column("p", justify="right")
    out.add_column("n (censored)", justify="right")
    for r in d.itertuples():
        out.add_row(r.measure, f"{r.threshold:.4g}", f"{r.value:+.3f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]",
                    f"{r.p_value:.2g}", f"{r.n} ({r.n_censored})")
    Console().print(out)
