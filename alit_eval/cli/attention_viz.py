"""``alit-eval attention-viz``: which image regions each 1D token is read from, as the paper draws it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from alit_eval.cli.options import (Ckpt, Family, Heads, Overwrite, RunId, TrustCheckpoint, budget_text, get_globals,
                                   parse_list)


def attention_viz(
    ctx: typer.Context,
    images: Optional[List[Path]] = typer.Argument(None, help="Image files (default: the first demo-scenes image)."),
    ckpt: Ckpt = "demo",
    budgets: Optional[str] = typer.Option(
        None, "--budgets", help="Rows: token budgets, in the --budgets syntax of the sweeps (default: the checkpoint's)."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Columns: token indices, e.g. 0,5,9 (default: every "
                                         "token up to 64 tokens, else the first 8 of each iteration)."),
    tokens_per_page: int = typer.Option(8, "--tokens-per-page", min=1,
                                        help="Token columns per page; more tokens go to further pages (_p2, ...)."),
    layer: Optional[int] = typer.Option(None, "--layer",
                                        help="Decoder layer (default: second to last, the official 6 of 8; -1 = last)."),
    indexing: str = typer.Option("corrected", "--indexing",
                                 help="corrected (key of token j; every family) or official-notebook (ALIT: the "
                                      "notebook's off-by-one)."),
    show_budget: bool = typer.Option(False, "--show-budget", help="Add each budget's reconstruction beside its maps."),
    out: Optional[Path] = typer.Option(None, "--out",
                                       help="Run folder (default <results-dir>/attention-viz/<config hash>)."),
    run_id: RunId = None,
    overwrite: Overwrite = False,
    heads: Heads = None,
    trust_checkpoint: TrustCheckpoint = False,
    family: Family = None,
) -> None:
    """Draw each token's decoder attention over the 2D grid, overlaid on the image (jet, alpha 0.4),
    with rows = budgets and an argmax map (each pixel coloured by the token it attends to most).

    Images are resized (bicubic) and centre-cropped as the official custom-image path. Writes, in a
    run folder named by a hash of the config (checkpoint and image hashes included; rerunning the
    same config reuses it, another config gets its own folder), figures/STEM_layerL_INDEXING.png/.pdf
    (pages _p1, _p2, ... when the tokens need several), the raw maps (.npz), a .json of the settings
    and meta.json.

    Examples:

        alit-eval attention-viz photo.jpg

        alit-eval attention-viz photo.jpg --ckpt alit_small.vqgan_quantized.in100 --budgets 32,128,256 \\
            --tokens 0,5,9 --show-budget
    """
    g = get_globals(ctx)
    from alit_eval.analysis.attention_viz import render_attention

    files = render_attention(
        [str(p) for p in images or []], ckpt=ckpt, budgets=budget_text(budgets),
        tokens=parse_list(tokens, int, option="--tokens", what="a token index") if tokens else None,
        layer=layer, indexing=indexing, show_budget=show_budget,
        results_dir=g.results_dir, run_id=run_id, overwrite=overwrite, out=out,
        tokens_per_page=tokens_per_page, seed=g.seed,
        device=g.device, offline=g.offline, heads=heads, trust_checkpoint=trust_checkpoint, family=family,
    )
    for f in files:
        if f.suffix == ".png":
            from alit_eval.printable import printable

            typer.echo(f"figure: {printable(f)}")  # named after the image file
