"""``alit-eval entropy-correlation``: does the number of tokens an image needs track its complexity?"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from alit_eval.cli.options import (
    PREPROCESS_HELP,
    get_globals, heads_option, parse_budgets, parse_list, subset_seed_option, workers_option,
)


def entropy_correlation(
    ctx: typer.Context,
    ckpt: str = typer.Option("demo", "--ckpt", help="Checkpoint file or pretrained name (`alit-eval models`)."),
    data: str = typer.Option("demo-scenes", "--data", help="Image folder, file list, glob, or demo split."),
    thresholds: str = typer.Option(
        "auto", "--thresholds",
        help="Comma-separated thresholds of the criterion: numbers, `auto` (median of the per-image metric at "
             "the middle budget) or `qP` (its P-quantile), e.g. 0.05,0.07 or q0.25,auto,q0.75."),
    criterion: str = typer.Option(
        "l1", "--criterion",
        help="l1 | official-l1 | mse | lpips | psnr | ssim (official-l1: the official encode() L1, unclamped)."),
    fallback: str = typer.Option(
        "min-error", "--fallback",
        help="Selection for censored images: min-error or max-budget (correlations count them as the largest budget)."),
    scores: Optional[Path] = typer.Option(
        None, "--scores", help="CSV with columns image,score (e.g. SAVOIAS human ratings) to correlate too."),
    control: Optional[str] = typer.Option(
        None, "--control", help="Also report partial correlations controlling for this measure, e.g. png_bpp."),
    n_boot: int = typer.Option(1000, "--n-boot", min=0, help="Bootstrap resamples for the 95% CIs."),
    methods: str = typer.Option("spearman,kendall,pearson", "--methods",
                                help="Correlations to report (Kendall's bootstrap is the slow one on large sets)."),
    from_run: Optional[Path] = typer.Option(
        None, "--from-run",
        help="Reuse the sweep of an earlier run folder (no reconstruction; the sweep options are then ignored)."),
    budgets: Optional[str] = typer.Option(None, "--budgets", help="Token budgets to sweep (default: all)."),
    preprocess: str = typer.Option("resize-center-crop", "--preprocess", help=PREPROCESS_HELP),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Use at most N images (demo default 100)."),
    subset_seed: Optional[int] = subset_seed_option(),
    halting: Optional[str] = typer.Option(None, "--halting",
                                          help="official | official-reseeded | seeded | off (default: the checkpoint's)."),
    workers: int = workers_option(),
    fid: bool = typer.Option(False, "--fid",
                             help="Also store Inception features in the sweep (for a later --from-run)."),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights", help="AlexNet state_dict for LPIPS."),
    heads: Optional[int] = heads_option(),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint",
                                          help="Allow full unpickling (trusted files only)."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Run folder name under results/entropy-correlation/."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a folder holding a different run."),
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
    g = get_globals(ctx)
    from alit_eval.analysis.entropy_correlation import run
    from alit_eval.engine.runner import SweepRequest

    specs = parse_list(thresholds, str, option="--thresholds", what="a threshold")
    req = SweepRequest(
        ckpt=ckpt, data=data, budgets=parse_budgets(budgets) if budgets else None, preprocess=preprocess, limit=limit,
        subset_seed=subset_seed, batch_size=batch_size, halting=halting, workers=workers, fid=fid,
        lpips_weights=str(lpips_weights) if lpips_weights else None, heads=heads, trust_checkpoint=trust_checkpoint,
    )
    run_dir, table = run(req, from_run=str(from_run) if from_run else None, thresholds=specs, criterion=criterion,
                         fallback=fallback, scores=str(scores) if scores else None, control=control, n_boot=n_boot,
                         methods=parse_list(methods, str, option="--methods", what="a method"),
                         seed=g.seed, device=g.device, offline=g.offline, results_dir=g.results_dir, run_id=run_id,
                         overwrite=overwrite)
    print_tokens_table(table)
    from alit_eval.analysis.signal import flat_note

    note = flat_note(table)
    if note:
        typer.secho(note, fg="red", err=True)
    typer.echo(f"results: {run_dir.path}")


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
