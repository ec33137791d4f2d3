"""``alit-eval fid``: reconstruction quality and rFID at each token budget, in one pass."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from alit_eval.cli.console import print_results
from alit_eval.cli.options import (
    MEASURE_OPTIONS, NOISE_OPTIONS, Out, Precision, SweepArgs, check_precision, sweep_command)


@sweep_command(MEASURE_OPTIONS, NOISE_OPTIONS)
def fid(
    ctx: typer.Context,
    sweep: SweepArgs,
    precision: Precision = "fp32",
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model and Inception (GPU)."),
    fid_ref: Optional[Path] = typer.Option(None, "--fid-ref", help="Reference stats .npz (mu/sigma) instead of the originals."),
    kid: bool = typer.Option(False, "--kid", help="Also compute KID."),
    no_compute: bool = typer.Option(False, "--no-compute", help="Skip the FLOP accounting (compute.csv)."),
    official_truncation: bool = typer.Option(False, "--official-truncation",
                                             help="Truncate to uint8 like the official PNG writer (default: round)."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first image that cannot be decoded."),
    save_recons: Optional[Path] = typer.Option(
        None, "--save-recons", help="Also write every reconstruction as a lossless PNG, as measured (same uint8 "
                                    "rounding): DIR/BUDGET/IMAGE_ID.png, and the preprocessed originals "
                                    "DIR/original/IMAGE_ID.png, for your own FID tool."),
    out: Out = None,
) -> None:
    """Reconstruct a dataset at several token budgets; write rFID, L1, MSE, PSNR, SSIM (LPIPS) per budget.

    One rollout per image serves every budget; an interrupted run resumes when rerun.

    Examples:

        alit-eval fid

        alit-eval fid --ckpt alit_small.vqgan_quantized.in100 --data /data/imagenet100/val \\
            --budgets 32,64,128,256 --preprocess center-crop
    """
    cfg = sweep.config
    cfg.precision, cfg.compile = check_precision(precision), compile_
    cfg.rounding, cfg.strict = ("truncate" if official_truncation else "round"), strict
    cfg.save_recons = str(save_recons) if save_recons else None
    from alit_eval.analysis.reconstruction import run

    run_dir, metrics = run(cfg, **sweep.run_kwargs(), reuse_finished=True, kid=kid, fid_ref=str(fid_ref) if fid_ref else None,
                           out=out, compute=not no_compute)
    if run_dir is None:  # a torchrun worker: rank 0 reports
        return
    print_table(metrics)
    if (run_dir.path / "noise_spread.csv").is_file():  # --noise-seeds N > 1
        import pandas as pd

        from alit_eval.analysis.noise_spread import print_spread

        print_spread(pd.read_csv(run_dir.path / "noise_spread.csv"))
    if "lpips" not in set(metrics["metric"]):  # the table would have had an LPIPS column
        reason = (run_dir.meta or {}).get("extra", {}).get("lpips")
        typer.secho(f"warning: no LPIPS column: {reason or 'LPIPS not computed'}", fg="yellow", err=True)
    print_results(run_dir)


def print_table(metrics) -> None:
    """Print budgets as rows and metrics as columns."""
    from rich.console import Console
    from rich.table import Table

    from alit_eval.metrics import specs

    wide = metrics.pivot_table(index="budget", columns="metric", values="value", aggfunc="first")
    table = Table(title="reconstruction per token budget")
    table.add_column("tokens", justify="right")
    cols = [c for c in specs.TABLE if c in wide.columns]
    for c in cols:
        table.add_column(c, justify="right")
    for budget, row in wide.iterrows():
        table.add_row(str(budget), *[format(row[c], specs.spec(c).fmt) for c in cols])
    Console().print(table)
