"""``alit-eval fid-stats``: reference FID statistics (mu, sigma) of a dataset, as an .npz file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from alit_eval.cli.options import PREPROCESS_HELP, get_globals


def fid_stats(
    ctx: typer.Context,
    data: str = typer.Argument(..., help="Image folder, file list, glob or demo split."),
    out: Path = typer.Argument(..., help="Output .npz with mu, sigma and n."),
    size: int = typer.Option(256, "--size", min=8, help="Preprocess images to this size first."),
    preprocess: str = typer.Option("resize-center-crop", "--preprocess", help=PREPROCESS_HELP.replace("read from the checkpoint", "given by --size")),
    limit: Optional[int] = typer.Option(None, "--limit", min=1),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    workers: int = typer.Option(0, "--workers", min=0),
    fid_resize: str = typer.Option("tf1", "--fid-resize", help="tf1 (torch-fidelity), pytorch-fid (official ALIT eval) or clean (clean-fid, PIL bicubic)."),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Compute Inception statistics of a dataset for `alit-eval fid --fid-ref OUT.npz`.

    Example:

        alit-eval fid-stats /data/imagenet100/train in100_train_256.npz --preprocess center-crop
    """
    g = get_globals(ctx)
    from alit_eval.errors import AlitEvalError

    if out.suffix != ".npz":
        raise AlitEvalError(f"OUT must end in .npz; got {out}")
    if out.exists() and not overwrite:
        raise AlitEvalError(f"{out} already exists; pass --overwrite to replace it")
    from alit_eval.analysis.fid_stats import compute_reference_stats

    n = compute_reference_stats(
        data, out, size=size, preprocess=preprocess, limit=limit, batch_size=batch_size, workers=workers,
        fid_resize=fid_resize, inception_weights=str(inception_weights) if inception_weights else None,
        device=g.device, offline=g.offline, results_dir=g.results_dir,
    )
    typer.echo(f"wrote {out} ({n} images, preprocess {preprocess}, size {size}, resize {fid_resize})")
