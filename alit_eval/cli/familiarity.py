"""``alit-eval familiarity``: do unfamiliar (out-of-distribution) images need more tokens?"""

from __future__ import annotations

from typing import List, Optional

import typer

from alit_eval.cli.options import (
    PREPROCESS_HELP,
    get_globals, heads_option, parse_budgets, parse_list, subset_seed_option, workers_option,
)


def familiarity(
    ctx: typer.Context,
    data: Optional[List[str]] = typer.Option(
        None, "--data",
        help="A dataset as [NAME=]SRC (folder, file list, glob or demo split); repeat it. The first is the "
             "reference. Default: demo-scenes, demo-unfamiliar, demo-natural."),
    from_run: Optional[List[str]] = typer.Option(
        None, "--from-run",
        help="Reuse a finished sweep as [NAME=]RUN_DIR (a fid/allocate/... run folder, or a familiarity run for "
             "all its datasets); repeatable; comes after the --data datasets."),
    ckpt: str = typer.Option("demo", "--ckpt", help="Checkpoint file or pretrained name (`alit-eval models`)."),
    thresholds: str = typer.Option(
        "auto", "--thresholds",
        help="Thresholds of the criterion: numbers, `auto` or `qP` (resolved on the reference dataset)."),
    criterion: str = typer.Option(
        "l1", "--criterion",
        help="l1 | official-l1 | mse | lpips | psnr | ssim (official-l1: the official encode() L1, unclamped)."),
    fallback: str = typer.Option(
        "min-error", "--fallback",
        help="Selection for censored images: min-error or max-budget (token statistics count them as the largest)."),
    n_boot: int = typer.Option(1000, "--n-boot", min=0, help="Bootstrap resamples for the 95% CIs."),
    budgets: Optional[str] = typer.Option(None, "--budgets", help="Token budgets to sweep (default: all)."),
    preprocess: str = typer.Option("resize-center-crop", "--preprocess", help=PREPROCESS_HELP),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    limit: Optional[int] = typer.Option(None, "--limit", min=1,
                                        help="Use at most N images per dataset (demo default 100)."),
    subset_seed: Optional[int] = subset_seed_option(),
    halting: Optional[str] = typer.Option(None, "--halting",
                                          help="official | official-reseeded | seeded | off (default: the checkpoint's)."),
    workers: int = workers_option(),
    no_fid: bool = typer.Option(False, "--no-fid", help="Skip Inception features and rFID."),
    fid_resize: str = typer.Option("tf1", "--fid-resize", help="tf1 (torch-fidelity), pytorch-fid (official ALIT eval) or clean (clean-fid, PIL bicubic)."),
    inception_weights: Optional[str] = typer.Option(None, "--inception-weights", help="FID Inception weights file."),
    lpips_weights: Optional[str] = typer.Option(None, "--lpips-weights", help="AlexNet state_dict for LPIPS."),
    heads: Optional[int] = heads_option(),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint",
                                          help="Allow full unpickling (trusted files only)."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Run folder name under results/familiarity/."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a folder holding a different run."),
) -> None:
    """Compare datasets at every budget: quality-vs-tokens curves, rFID, required tokens per image, and
    the token difference to the reference (bootstrap CI, Mann–Whitney U).

    Examples:

        alit-eval familiarity

        alit-eval familiarity --data in=demo-scenes --data ood=demo-unfamiliar --data demo-probes

        alit-eval familiarity --ckpt alit_small.vqgan_quantized.in100 --data in100=/data/in100/val \\
            --data coco=/data/coco/val2017 --limit 1000 --thresholds 0.05,0.07
    """
    g = get_globals(ctx)
    from alit_eval.analysis.familiarity import DEFAULT_DATASETS, parse_datasets, run
    from alit_eval.engine.runner import SweepRequest

    specs = parse_datasets(list(data or ([] if from_run else DEFAULT_DATASETS)), list(from_run or []))
    req = SweepRequest(
        ckpt=ckpt, budgets=parse_budgets(budgets) if budgets else None, preprocess=preprocess, limit=limit,
        subset_seed=subset_seed, batch_size=batch_size, halting=halting, workers=workers, fid=not no_fid,
        fid_resize=fid_resize, inception_weights=inception_weights, lpips_weights=lpips_weights, heads=heads,
        trust_checkpoint=trust_checkpoint,
    )
    run_dir, _, comp = run(req, datasets=specs, thresholds=parse_list(thresholds, str, option="--thresholds",
                                                                      what="a threshold"),
                           criterion=criterion, fallback=fallback, n_boot=n_boot, seed=g.seed, device=g.device,
                           offline=g.offline, results_dir=g.results_dir, run_id=run_id, overwrite=overwrite)
    print_comparisons(comp, specs[0].name)
    typer.echo(f"results: {run_dir.path}")


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
