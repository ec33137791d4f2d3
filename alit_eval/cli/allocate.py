"""``alit-eval allocate``: per-image token budgets under a token selection criterion (TSC)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from alit_eval.cli.options import (
    PREPROCESS_HELP,
    get_globals, heads_option, parse_budgets, parse_list, subset_seed_option, workers_option,
)

# KARL Tab. 2/6 thresholds; 0.07 is the official default
DEFAULT_THRESHOLDS = {"l1": "0.03,0.05,0.07,0.09", "official-l1": "0.03,0.05,0.07,0.09"}
QUANTILE_THRESHOLDS = "q0.25,q0.5,q0.75"


def allocate(
    ctx: typer.Context,
    ckpt: str = typer.Option("demo", "--ckpt", help="Checkpoint file or pretrained name (`alit-eval models`)."),
    data: str = typer.Option("demo-scenes", "--data", help="Image folder, file list, glob, or demo split."),
    thresholds: Optional[str] = typer.Option(
        None, "--thresholds",
        help="Comma-separated thresholds: numbers, `auto` (median of the per-image metric at the middle budget) "
             "or `qP` (its P-quantile). Default: 0.03,0.05,0.07,0.09 for l1, q0.25,q0.5,q0.75 otherwise."),
    criterion: str = typer.Option("l1", "--criterion",
                                  help="l1 | official-l1 | mse | lpips (stay below) or psnr | ssim (exceed). "
                                       "official-l1 = the official encode() rule (unclamped-reconstruction L1)."),
    fallback: str = typer.Option(
        "min-error", "--fallback",
        help="Budget of images that never reach the threshold: min-error (official) or max-budget."),
    batch_criterion: Optional[int] = typer.Option(
        None, "--official-batch-criterion", min=1,
        help="Apply the official batch-mean rule to groups of N consecutive images (default: per image)."),
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
    no_fid: bool = typer.Option(False, "--no-fid", help="Skip Inception features (fixed and variable-token FID)."),
    fid_resize: str = typer.Option("tf1", "--fid-resize", help="tf1 (torch-fidelity), pytorch-fid (official ALIT eval) or clean (clean-fid, PIL bicubic)."),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights", help="FID Inception weights file."),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights", help="AlexNet state_dict for LPIPS."),
    heads: Optional[int] = heads_option(),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint",
                                          help="Allow full unpickling (trusted files only)."),
    no_gallery: bool = typer.Option(False, "--no-gallery", help="Skip the gallery of images sorted by budget."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Run folder name under results/allocate/."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a folder holding a different run."),
) -> None:
    """Select each image's token budget (smallest budget whose error is below a threshold) at several
    thresholds; report tokens used, censoring, adaptive quality, variable-token FID (with a shuffled-budget
    control) and token savings.

    Selection is per image (batch-independent); the official encode() averages L1 over the whole
    batch, which --official-batch-criterion N reproduces.

    Examples:

        alit-eval allocate

        alit-eval allocate --ckpt alit_small.vqgan_quantized.in100 --data /data/in100/val --thresholds 0.05,0.07

        alit-eval allocate --from-run results/fid/<run_id> --criterion psnr --thresholds 20,25
    """
    g = get_globals(ctx)
    from alit_eval.analysis.allocation_report import run
    from alit_eval.engine.runner import SweepRequest

    specs = parse_list(thresholds or DEFAULT_THRESHOLDS.get(criterion, QUANTILE_THRESHOLDS), str,
                       option="--thresholds", what="a threshold")
    req = SweepRequest(
        ckpt=ckpt, data=data, budgets=parse_budgets(budgets) if budgets else None, preprocess=preprocess, limit=limit,
        subset_seed=subset_seed, batch_size=batch_size, halting=halting, workers=workers, fid=not no_fid,
        fid_resize=fid_resize, inception_weights=str(inception_weights) if inception_weights else None,
        lpips_weights=str(lpips_weights) if lpips_weights else None, heads=heads, trust_checkpoint=trust_checkpoint,
    )
    run_dir, _, _ = run(req, from_run=str(from_run) if from_run else None, thresholds=specs, criterion=criterion,
                        fallback=fallback, batch_criterion=batch_criterion, gallery=not no_gallery, seed=g.seed,
                        device=g.device, offline=g.offline, results_dir=g.results_dir, run_id=run_id,
                        overwrite=overwrite)
    print_summary(run_dir.path / "allocation_summary.csv", criterion)
    import pandas as pd

    from alit_eval.analysis.signal import flat_note

    note = flat_note(pd.read_csv(run_dir.path / "allocation_summary.csv"))
    if note:
        typer.secho(note, fg="red", err=True)
    typer.echo(f"results: {run_dir.path}")


def print_summary(path: Path, criterion: str) -> None:
    """Print one row per threshold from ``allocation_summary.csv``."""
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from alit_eval.analysis.allocation import CRITERIA

    s = pd.read_csv(path)
    table = Table(title=f"token allocation ({criterion} criterion)")
    cols = [("threshold", "threshold"), ("mean_tokens", "mean tok"), ("median_tokens", "median"),
            ("censored_share", "censored"), (f"adaptive_{CRITERIA[criterion][0]}", criterion),
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
