"""``alit-eval report``: one self-contained HTML page (and a Markdown summary) from run folders."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from alit_eval.cli.options import get_globals


def report(
    ctx: typer.Context,
    runs: List[Path] = typer.Argument(
        ..., help="Run folders (results/<command>/<run_id>), folders of runs (results/fid), or a whole results folder."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default results/report/<name>)."),
    name: Optional[str] = typer.Option(None, "--name",
                                       help="Report folder name (default: <command>-<run_id>, or compare-<hash>)."),
    title: Optional[str] = typer.Option(None, "--title", help="Page title."),
) -> None:
    """Gather runs into report.html (figures embedded, no network needed) and report.md: configuration and
    provenance, headline tables, every figure, warnings, and comparisons where the runs' conditions match.

    Examples:

        alit-eval report results/fid/<run_id>

        alit-eval report results/fid/<run_a> results/fid/<run_b> --name two-checkpoints

        alit-eval report results/allocate --out /tmp/allocation-report

        alit-eval report results/demo --out results/demo/report
    """
    g = get_globals(ctx)
    from alit_eval.results.report_html import build_report

    html_path, md_path = build_report(runs, out=out, results_dir=g.results_dir, name=name, title=title)
    typer.echo(f"report: {html_path}")
    typer.echo(f"summary: {md_path}")
