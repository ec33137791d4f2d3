"""``alit-eval rate-distortion``: the tokenizer's budgets as bits per image, against JPEG and WebP."""

from __future__ import annotations

from typing import Optional

import typer

from alit_eval.cli.console import print_results
from alit_eval.cli.options import MEASURE_OPTIONS, FromRun, SweepArgs, parse_list, sweep_command


@sweep_command(MEASURE_OPTIONS)
def rate_distortion(
    ctx: typer.Context,
    sweep: SweepArgs,
    codecs: str = typer.Option("jpeg,webp", "--codecs", help="Codecs to compare: jpeg, webp (Pillow)."),
    codec_workers: int = typer.Option(0, "--codec-workers", min=0,
                                      help="Worker processes for the codec search (0: in this process)."),
    search: str = typer.Option("exhaustive", "--search",
                               help="exhaustive (all qualities 1..100, exact) or binary (assumes size grows with quality)."),
    curve_qualities: str = typer.Option("1,2,5,10,20,30,50,75,90,95", "--curve-qualities",
                                        help="Qualities of each codec's own rate-distortion curve."),
    bits_per_token: Optional[float] = typer.Option(
        None, "--bits-per-token", min=0.0,
        help="Override the bits one token costs (default: log2(codebook size), or 16 x token dim if continuous)."),
    from_run: FromRun = None,
) -> None:
    """Compare the tokenizer with JPEG and WebP at equal bits per image: for every image and budget each
    codec gets the highest-size quality that does not exceed the tokenizer's bits; L1, PSNR, SSIM and
    rFID of both, and each codec's own quality sweep, against bits per pixel.

    Examples:

        alit-eval rate-distortion

        alit-eval rate-distortion --from-run results/fid/<run_id> --codec-workers 8

        alit-eval rate-distortion --ckpt alit_small.vqgan_quantized.in100 --data /data/in100/val --limit 500
    """
    from alit_eval.analysis.rate_distortion import run

    names = [c.lower() for c in parse_list(codecs, str, option="--codecs", what="a codec")]
    qualities = parse_list(curve_qualities, int, option="--curve-qualities", what="a whole number")
    run_dir, metrics = run(sweep.config, **sweep.run_kwargs(), reuse_finished=True, from_run=str(from_run) if from_run else None,
                           codecs=names, codec_workers=codec_workers, curve_qualities=qualities, search=search,
                           bits_per_token_override=bits_per_token)
    print_table(metrics)
    print_results(run_dir)


def print_table(metrics) -> None:
    """One row per budget and method: bpp, L1, PSNR, SSIM, rFID (codecs: share of images reachable)."""
    from rich.console import Console
    from rich.table import Table

    from alit_eval.results.schema import parse_condition

    m = metrics.copy()
    cond = m["condition"].map(parse_condition)
    m["method"] = cond.map(lambda c: c.get("method", ""))
    m = m[m["budget"].notna() & (m["method"] != "") & ~cond.map(lambda c: "subset" in c)]
    wide = m.pivot_table(index=["budget", "method"], columns="metric", values="value", aggfunc="first")
    table = Table(title="rate-distortion (codecs: means over the images they can fit into the budget)")
    for name in ("tokens", "method", "bpp", "L1", "PSNR", "SSIM", "rFID", "reachable"):
        table.add_column(name, justify="left" if name == "method" else "right")
    order = {"tokenizer": 0}
    rows = sorted(wide.iterrows(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 1), kv[0][1]))
    for (budget, method), row in rows:
        cells = [row.get(k, float("nan")) for k in ("bpp", "l1", "psnr", "ssim", "rfid")]
        reach = row.get("reachable_share", float("nan"))
        table.add_row(str(budget), method, *[f"{v:.4g}" for v in cells], "" if reach != reach else f"{100 * reach:.0f}%")
    Console().print(table)
