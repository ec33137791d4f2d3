"""``alit-eval downstream``: linear probes on token features per budget, and task-driven token selection."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from alit_eval.cli.console import print_results
from alit_eval.cli.options import Out, SweepArgs, parse_list, sweep_command

DEMO_LIMIT = 400  # enough demo images for an 8-class probe with a 30% held-out split


@sweep_command()
def downstream(
    ctx: typer.Context,
    sweep: SweepArgs,
    labels: Optional[Path] = typer.Option(None, "--labels", help="CSV with rows image,label (overrides folder labels)."),
    targets: Optional[Path] = typer.Option(None, "--targets",
                                           help="CSV with rows image,value: a continuous target for a ridge probe."),
    features: str = typer.Option("latent,codes,2d,2d+first,base2d", "--features",
                                 help="Feature kinds: latent, codes, codes-flat, 2d, 2d+first, base2d."),
    test_fraction: float = typer.Option(0.3, "--test-fraction", help="Held-out share (stratified by label)."),
    threshold: float = typer.Option(0.05, "--threshold", help="L1 threshold of the reconstruction criterion."),
    select_feature: str = typer.Option("latent", "--select-feature",
                                       help="Feature kind whose probe defines the classification criterion."),
    no_recon_view: bool = typer.Option(False, "--no-recon-view",
                                       help="Skip re-encoding reconstructions (the One-D-Piece view)."),
    out: Out = None,
) -> None:
    """Linear probes on token features at each budget (top-1/top-5 with CIs; ridge R²/MAE for --targets),
    the smallest budget at which each image is classified correctly vs the L1 criterion, and a probe
    trained on originals applied to re-encoded reconstructions.

    Examples:

        alit-eval downstream

        alit-eval downstream --ckpt alit_small.vqgan_quantized.in100 --data /data/imagenet100/val \\
            --limit 5000 --subset-seed 0 --budgets 32,64,128,256
    """
    from alit_eval.analysis.downstream import ProbeOptions, run

    kinds = tuple(parse_list(features, str, option="--features", what="a feature kind"))
    opts = ProbeOptions(kinds=kinds, test_fraction=test_fraction, threshold=threshold, recon_view=not no_recon_view,
                        select_kind=select_feature, labels_csv=str(labels) if labels else None,
                        targets_csv=str(targets) if targets else None)
    cfg = sweep.config
    if cfg.limit is None and cfg.data.startswith("demo-"):
        cfg.limit = DEMO_LIMIT
    run_dir, metrics = run(cfg, opts, **sweep.run_kwargs(), reuse_finished=True, out=out)
    _print(metrics)
    print_results(run_dir)


def _print(metrics) -> None:
    """Top-1 accuracy per feature kind (columns) and budget (rows), then the selection summary."""
    from rich.console import Console
    from rich.table import Table

    from alit_eval.results.schema import parse_condition

    m = metrics.assign(**{k: metrics["condition"].map(lambda c, k=k: parse_condition(c).get(k, ""))
                          for k in ("feature", "view", "criterion", "criteria", "target")})
    top1 = m[m["metric"] == "top1"].copy()
    console = Console()
    if len(top1):
        top1["column"] = top1["feature"] + top1["view"].map({"tokens": "", "reconstruction": " (recon)"})
        wide = top1.pivot_table(index=top1["budget"].astype("float").fillna(-1), columns="column", values="value")
        table = Table(title="held-out top-1 accuracy (recon: probe on re-encoded reconstructions)")
        table.add_column("tokens", justify="right")
        for c in wide.columns:
            table.add_column(c, justify="right")
        for b, row in wide.iterrows():
            table.add_row("any" if b < 0 else str(int(b)),
                          *["" if row[c] != row[c] else f"{row[c]:.3f}" for c in wide.columns])
        console.print(table)
    for _, r in m[m["metric"].isin(["chance_majority", "mean_selected_tokens", "spearman_rho"])].iterrows():
        what = r["criterion"] or r["criteria"] or ""
        ci = "" if r["ci_low"] != r["ci_low"] else f" [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"
        console.print(f"{r['metric']} {what}: {r['value']:.4g}{ci} (n={r['n']})")
