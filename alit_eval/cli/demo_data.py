"""``alit-eval demo-data``: write a procedural demo split to disk (PNGs, masks, ground-truth CSV)."""

from __future__ import annotations

from pathlib import Path

import typer


def demo_data(
    out_dir: Path = typer.Argument(..., help="Folder to create."),
    split: str = typer.Option("demo-scenes", "--split",
                              help="demo-scenes, demo-unfamiliar, demo-natural or demo-probes."),
    n: int = typer.Option(100, "-n", "--n", min=1, help="Number of images."),
    size: int = typer.Option(64, "--size", min=8, help="Image size in pixels."),
    seed: int = typer.Option(0, "--data-seed", help="Generation seed (0 = evaluation set; 1 trains the demo tokenizer)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty OUT_DIR."),
) -> None:
    """Write demo images with their ground truth, usable like any user folder.

    Writes images/<id>.png, masks/<id>.png (instance ids; scenes only) and ground_truth.csv.

    Example:

        alit-eval demo-data demo_scenes --split demo-scenes -n 200
    """
    from alit_eval.data.demo import write_split

    path = write_split(out_dir, split, n, seed=seed, size=size, overwrite=overwrite)
    typer.echo(f"wrote {n} {split} images to {path}")
