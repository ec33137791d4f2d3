"""``alit-eval profile``: FLOPs, parameters and latency per token budget (compute accounting)."""

from __future__ import annotations


import typer

from alit_eval.cli.console import print_results
from alit_eval.cli.options import (
    Budgets, Ckpt, Family, Heads, InceptionWeights, NoFid, Overwrite, Precision, RunId, TrustCheckpoint, budget_text,
    check_precision, get_globals,
)


def profile(
    ctx: typer.Context,
    ckpt: Ckpt = "demo",
    budgets: Budgets = None,
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Images per call (the official eval uses 1)."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed calls per measurement (median reported)."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Untimed calls before timing."),
    precision: Precision = "fp32",
    no_fid: NoFid = False,
    inception_weights: InceptionWeights = None,
    heads: Heads = None,
    trust_checkpoint: TrustCheckpoint = False,
    run_id: RunId = None,
    overwrite: Overwrite = False,
    family: Family = None,
) -> None:
    """Count FLOPs and parameters and time the tokenizer per budget: the rollout to each budget (grows
    with the budget), the pixel decode of each budget, one all-budget sweep and the FID features.

    Writes compute.csv, params.csv, metrics.csv and figures/cost_structure under results/profile/.

    Examples:

        alit-eval profile

        alit-eval --device cuda profile --ckpt alit_small.vqgan_quantized.in100 --budgets 32,64,128,256
    """
    g = get_globals(ctx)
    check_precision(precision)
    from alit_eval.analysis.profile import run

    run_dir, table, params = run(
        ckpt, budget_text(budgets), device=g.device, seed=g.seed, offline=g.offline,
        results_dir=g.results_dir, batch_size=batch_size, repeats=repeats, warmup=warmup, precision=precision,
        fid=not no_fid, inception_weights=str(inception_weights) if inception_weights else None, heads=heads,
        trust_checkpoint=trust_checkpoint, run_id=run_id, overwrite=overwrite, family=family,
    )
    print_tables(table, params)
    print_results(run_dir)


def print_tables(table, params) -> None:
    """Print the compute table (stages x budgets) and the parameter counts."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title="compute per image")
    # One column per FLOP component of the tokenizer's family (the compute table's gflops_<component>).
    comps = [c for c in table.columns if c.startswith("gflops_") and table[c].notna().any()]
    for name in ("stage", "tokens", "GFLOPs", *(c.removeprefix("gflops_").replace("_", " ") for c in comps),
                 "latency ms"):
        t.add_column(name, justify="left" if name == "stage" else "right")

    def fmt(v, spec=".4g") -> str:
        return "-" if v is None or v != v else format(v, spec)

    for r in table.itertuples(index=False):
        budget = "all" if r.stage == "sweep" else ("" if str(r.budget) == "<NA>" else str(r.budget))
        t.add_row(r.stage, budget, fmt(r.gflops), *(fmt(getattr(r, c)) for c in comps), fmt(r.latency_ms, ".1f"))
    console.print(t)
    p = Table(title="parameters")
    p.add_column("component")
    p.add_column("params", justify="right")
    p.add_column("share", justify="right")
    for r in params.itertuples(index=False):
        p.add_row(r.component, f"{int(r.params):,}", f"{100 * r.share:.1f}%")
    console.print(p)
    first = table.iloc[0]
    console.print(f"device {first['device']}, precision {first['precision']}, batch {first['batch_size']}, "
                  f"median of {first['repeats']} runs")
