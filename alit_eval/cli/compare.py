"""``alit-eval compare``: several tokenizers (any families) on the same images, in one run folder."""

from __future__ import annotations

from typing import List, Optional

import typer

from alit_eval.cli.console import print_results
from alit_eval.cli.options import (
    Criterion, Fallback, MEASURE_OPTIONS, NBoot, NOISE_OPTIONS, SweepArgs, Thresholds, parse_list, sweep_command)


@sweep_command(MEASURE_OPTIONS, NOISE_OPTIONS)
def compare(
    ctx: typer.Context,
    sweep: SweepArgs,
    ckpt: List[str] = typer.Option(
        ..., "--ckpt",
        help="A tokenizer as [LABEL=]CKPT (file or pretrained name); repeat it (two or more). The first is the "
             "reference of the paired tests."),
    budgets: Optional[str] = typer.Option(
        None, "--budgets",
        help="The budgets requested, for all tokenizers (e.g. 32,64,128,256 or 8-256:8 or 1,2,4,...). Each "
             "tokenizer is swept at those it can produce; the others are reported as absent, never interpolated. "
             "Default: each tokenizer's own."),
    family: Optional[List[str]] = typer.Option(
        None, "--family", help="Force a tokenizer's family as LABEL=FAMILY (LABEL: its --ckpt label or text)."),
    heads: Optional[List[str]] = typer.Option(
        None, "--heads", help="Attention heads of one tokenizer whose weights do not determine them, as LABEL=N."),
    thresholds: Thresholds = "auto",
    criterion: Criterion = "l1",
    fallback: Fallback = "min-error",
    n_boot: NBoot = 1000,
    official_truncation: bool = typer.Option(False, "--official-truncation",
                                             help="Truncate to uint8 like the official PNG writer (default: round)."),
    mixed_sizes: bool = typer.Option(False, "--mixed-sizes",
                                     help="Compare tokenizers that take different image sizes anyway (each at its "
                                          "own size; pixel metrics then differ in resolution, flagged). Default: "
                                          "refuse."),
) -> None:
    """Compare tokenizers on the same images: rFID, L1, PSNR, SSIM against tokens and bits per image,
    tokens needed per image at matched thresholds, and paired tests (Wilcoxon signed-rank) per image.

    Each tokenizer's sweep runs in its own resumable sub-folder (sweeps/<label>/).

    Examples:

        alit-eval compare --ckpt alit=alit_small.vqgan_quantized.in100 --ckpt karl=karl_small.vqgan_quantized.in100 \\
            --data /data/imagenet100/val --budgets 32,64,128,256 --thresholds 0.03,0.05,0.09

        alit-eval compare --ckpt a.pth --ckpt b.safetensors --data demo-scenes --limit 8 --no-fid
    """
    _check_ckpts(ckpt)  # before the heavy imports below: a wrong count or path fails at once
    from alit_eval.analysis.compare import parse_tokenizers, run

    sweep.config.rounding = "truncate" if official_truncation else "round"
    specs = parse_tokenizers(list(ckpt), list(family or []), list(heads or []))
    run_dir, table, summary, tests, notes = run(
        sweep.config, **sweep.run_kwargs(), tokenizers=specs, budgets=budgets,
        thresholds=parse_list(thresholds, str, option="--thresholds", what="a threshold"),
        criterion=criterion, fallback=fallback, n_boot=n_boot, mixed_sizes=mixed_sizes)
    _print_notes(notes)
    print_summary(summary, tests)
    if (run_dir.path / "noise_spread.csv").is_file():  # --noise-seeds N > 1
        from alit_eval.analysis import noise_spread

        for note in noise_spread.within_lines(table, sweep.config.noise_seeds):
            typer.echo(note)
    print_results(run_dir)


def _check_ckpts(ckpt: List[str]) -> None:
    """Fail at once on a wrong number of --ckpt or a missing path (LABEL=CKPT or CKPT)."""
    from alit_eval.cli.early import check_ckpt, check_ckpt_count

    check_ckpt_count(ckpt)
    for text in ckpt:
        name, sep, value = text.partition("=")
        check_ckpt(value if sep and "/" not in name and "\\" not in name else text)


def _print_notes(notes: str) -> None:
    """Echo the run's notes; warnings go to stderr in red."""
    for line in notes.splitlines():
        typer.secho(line, fg="red" if line.startswith("warning:") else None, err=line.startswith("warning:"))


def print_summary(summary, tests) -> None:
    """Mean tokens at each matched threshold, with the paired test against the reference."""
    from rich.console import Console
    from rich.table import Table

    t = tests[tests["quantity"] == "tokens"] if len(tests) else tests
    out = Table(title="tokens the decoder receives per image at matched thresholds (mean, 95% CI; paired Wilcoxon "
                      "vs the first)")
    fid = "variable_rfid" in summary and summary["variable_rfid"].notna().any()
    columns = ["tokenizer", "threshold", "mean tokens [CI]", "censored", "diff vs ref", "p"]
    columns += ["var. rFID", "shuffled rFID"] if fid else []
    columns += ["budget signal"] if "budget_signal" in summary else []
    for c in columns:
        out.add_column(c, justify="right")
    for r in summary.to_dict("records"):
        hit = t[(t["tokenizer"] == r["tokenizer"]) & (t["threshold"] == r["threshold"])] if len(t) else t
        diff = f"{hit['diff'].iloc[0]:+.1f}" if len(hit) else "ref"
        p = f"{hit['p_value'].iloc[0]:.2g}" if len(hit) else ""
        cells = [r["tokenizer"], f"{r['threshold']:.4g}",
                 f"{r['mean_tokens']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]",
                 f"{r['n_censored']}/{r['n']}", diff, p]
        if fid:
            cells += [f"{r.get('variable_rfid', float('nan')):.4g}", f"{r.get('shuffled_rfid', float('nan')):.4g}"]
        if "budget_signal" in summary:
            cells.append("NO SIGNAL" if r["budget_signal"] == "flat" else str(r["budget_signal"]))
        out.add_row(*cells)
    Console().print(out)
