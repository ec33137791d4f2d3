"""What every command prints after its own output: the run's summary and where its results are.

The summary comes back with the run folder (``run_dir.meta``, written by `RunDir.finish`); nothing is
read back from disk that the run just wrote (a rerun of a finished run: `alit_eval.cli.finished`).
Stdlib + typer at import time (``--help`` stays instant).
"""

from __future__ import annotations

from typing import Any

import typer

from alit_eval.errors import run_summary


def print_summary(lines: list[str]) -> None:
    """Print a run's summary (`alit_eval.analysis.skeleton.summary_lines`); warnings go to stderr."""
    for line in lines:
        if line.startswith("warning:"):
            typer.secho(line, fg="yellow", err=True)
        else:
            typer.echo(line)


def print_results(run_dir: Any) -> None:
    """The closing lines of a command: ``results: <folder>``, then the summary the run recorded."""
    typer.echo(f"results: {run_dir.path}")
    print_summary(run_summary(getattr(run_dir, "meta", None)))
