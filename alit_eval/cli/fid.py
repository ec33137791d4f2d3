"""``alit-eval fid``: reconstruction quality and rFID at each token budget, in one pass."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from alit_eval.cli.options import (
    PREPROCESS_HELP,
    get_globals, heads_option, parse_budgets, subset_seed_option, trust_checkpoint_option, workers_option,
)
from alit_eval.errors import AlitEvalError


def parse_batch_size(text: str) -> int:
    """A positive integer, or ``auto`` (0 internally)."""
    if text == "auto":
        return 0
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise AlitEvalError(f"--batch-size must be a positive integer or 'auto'; got {text!r}")


def fid(
    ctx: typer.Context,
    ckpt: str = typer.Option("demo", "--ckpt", help="Checkpoint file or pretrained name (`alit-eval models`)."),
    data: str = typer.Option("demo-scenes", "--data",
                             help="Image folder, .txt/.csv file list, glob, or demo split (demo-scenes, ...)."),
    budgets: Optional[str] = typer.Option(None, "--budgets", help="Token budgets, e.g. 32,64,128,256 (default: all)."),
    preprocess: str = typer.Option("resize-center-crop", "--preprocess",
                                   help=PREPROCESS_HELP),
    batch_size: str = typer.Option("16", "--batch-size", help="Images per batch, or 'auto' (back off on out-of-memory)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 (reported numbers) | bf16 | tf32 (approximate, faster)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model and Inception (GPU)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Use at most N images (demo default 100)."),
    subset_seed: Optional[int] = subset_seed_option(),
    halting: Optional[str] = typer.Option(None, "--halting",
                                          help="official | official-reseeded | seeded | off (default: the checkpoint's)."),
    workers: int = workers_option(),
    fid_resize: str = typer.Option("tf1", "--fid-resize", help="tf1 (torch-fidelity), pytorch-fid (official ALIT eval) or clean (clean-fid, PIL bicubic)."),
    fid_ref: Optional[Path] = typer.Option(None, "--fid-ref", help="Reference stats .npz (mu/sigma) instead of the originals."),
    no_fid: bool = typer.Option(False, "--no-fid", help="Skip Inception features and rFID."),
    kid: bool = typer.Option(False, "--kid", help="Also compute KID."),
    no_compute: bool = typer.Option(False, "--no-compute", help="Skip the FLOP accounting (compute.csv)."),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights", help="FID Inception weights file."),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights", help="torchvision AlexNet state_dict for LPIPS."),
    official_truncation: bool = typer.Option(False, "--official-truncation",
                                             help="Truncate to uint8 like the official PNG writer (default: round)."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first image that cannot be decoded."),
    heads: Optional[int] = heads_option(),
    trust_checkpoint: bool = trust_checkpoint_option(),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default results/fid/<config hash>)."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Run folder name under results/fid/."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a folder holding a different run."),
) -> None:
    """Reconstruct a dataset at several token budgets; write rFID, L1, MSE, PSNR, SSIM (LPIPS) per budget.

    One rollout per image serves every budget; an interrupted run resumes when rerun.

    Examples:

        alit-eval fid

        alit-eval fid --ckpt alit_small.vqgan_quantized.in100 --data /data/imagenet100/val \\
            --budgets 32,64,128,256 --preprocess center-crop
    """
    g = get_globals(ctx)
    if precision not in ("fp32", "bf16", "tf32"):
        raise AlitEvalError(f"--precision must be fp32, bf16 or tf32; got {precision!r}")
    from alit_eval.analysis.reconstruction import run
    from alit_eval.engine.runner import SweepRequest

    req = SweepRequest(
        ckpt=ckpt, data=data, budgets=parse_budgets(budgets) if budgets else None, preprocess=preprocess,
        limit=limit, subset_seed=subset_seed, batch_size=parse_batch_size(batch_size), halting=halting, workers=workers,
        fid=not no_fid, fid_resize=fid_resize, inception_weights=str(inception_weights) if inception_weights else None,
        lpips_weights=str(lpips_weights) if lpips_weights else None, official_truncation=official_truncation,
        strict=strict, heads=heads, trust_checkpoint=trust_checkpoint, precision=precision, compile=compile_,
    )
    run_dir, metrics = run(req, seed=g.seed, device=g.device, offline=g.offline, results_dir=g.results_dir,
                           run_id=run_id, overwrite=overwrite, kid=kid, fid_ref=str(fid_ref) if fid_ref else None,
                           out=out, compute=not no_compute)
    if run_dir is None:  # a torchrun worker: rank 0 reports
        return
    print_table(metrics)
    if "lpips" not in set(metrics["metric"]):  # the table would have had an LPIPS column
        import json

        reason = json.loads((run_dir.path / "meta.json").read_text()).get("extra", {}).get("lpips")
        typer.secho(f"warning: no LPIPS column: {reason or 'LPIPS not computed'}", fg="yellow", err=True)
    typer.echo(f"results: {run_dir.path}")


def print_table(metrics) -> None:
    """Print budgets as rows and metrics as columns."""
    from rich.console import Console
    from rich.table import Table

    wide = metrics.pivot_table(index="budget", columns="metric", values="value", aggfunc="first")
    table = Table(title="reconstruction per token budget")
    table.add_column("tokens", justify="right")
    cols = [c for c in ("rfid", "l1", "mse", "psnr", "ssim", "lpips", "kid") if c in wide.columns]
    for c in cols:
        table.add_column(c, justify="right")
    for budget, row in wide.iterrows():
        table.add_row(str(budget), *[f"{row[c]:.4g}" for c in cols])
    Console().print(table)
