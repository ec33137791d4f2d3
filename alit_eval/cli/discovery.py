"""``alit-eval discovery``: do tokens bind to objects? FG-ARI and mIoU of attention argmax segments."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from alit_eval.cli.console import print_results
from alit_eval.cli.options import Out, SweepArgs, sweep_command

DEMO_LIMIT = 200


@sweep_command()
def discovery(
    ctx: typer.Context,
    sweep: SweepArgs,
    masks: Optional[Path] = typer.Option(None, "--masks",
                                         help="Folder of instance-mask PNGs named like the images (0 = background)."),
    indexing: str = typer.Option("corrected", "--indexing", help="corrected or official-notebook."),
    min_objects: int = typer.Option(1, "--min-objects", min=0, help="Score only images with at least this many objects."),
    out: Out = None,
) -> None:
    """Assign every pixel to the token its 2D cell attends to most and score the segments against
    instance masks: FG-ARI and Hungarian mIoU per budget and decoder layer, next to a grid with as
    many cells as tokens (and one with as many cells as tokens used).

    Examples:

        alit-eval discovery

        alit-eval discovery --ckpt alit_small.vqgan_quantized.in100 --data coco/val2017 \\
            --masks coco/instance_pngs --limit 500 --budgets 32,64,128,256
    """
    from alit_eval.analysis.discovery import run_discovery

    cfg = sweep.config
    if cfg.limit is None and cfg.data.startswith("demo-"):
        cfg.limit = DEMO_LIMIT
    run_dir, metrics, summary = run_discovery(cfg, **sweep.run_kwargs(), reuse_finished=True, indexing=indexing, min_objects=min_objects,
                                              masks_dir=str(masks) if masks else None, out=out)
    _print(metrics, summary)
    print_results(run_dir)


def _print(metrics, summary) -> None:
    from rich.console import Console
    from rich.table import Table

    from alit_eval.results.schema import parse_condition

    layer = str(summary["layer"])
    table = Table(title=f"object discovery, decoder layer {layer} (mean over images)")
    for c in ("tokens", "FG-ARI tokens", "FG-ARI grid", "FG-ARI grid-used", "mIoU tokens", "mIoU grid",
              "mIoU grid-used"):
        table.add_column(c, justify="right")
    for b in sorted(metrics["budget"].dropna().unique()):
        cells = [str(int(b))]
        for metric in ("fg_ari", "miou"):
            for method in ("tokens", "grid", "grid-used"):
                d = metrics[(metrics["budget"] == b) & (metrics["metric"] == metric)]
                v = [r["value"] for _, r in d.iterrows()
                     if parse_condition(r["condition"]).get("method") == method
                     and parse_condition(r["condition"]).get("layer", layer) == layer]
                cells.append(f"{v[0]:.3f}" if v and v[0] == v[0] else "")
        table.add_row(*cells)
    console = Console()
    console.print(table)
    for metric in ("fg_ari", "miou"):
        gain = summary.get(f"{metric}_gain_vs_grid")
        if gain:
            verdict = f"tokens vs grid: {summary[f'{metric}_tokens_vs_grid']} (95% CI of the paired gain)"
            console.print(f"{metric} gain over grid at {summary['budget']} tokens: {gain['value']:+.3f} "
                          f"[{gain['ci'][0]:+.3f}, {gain['ci'][1]:+.3f}] (n={gain['n']}): {verdict}")
