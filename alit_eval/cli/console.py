"""What every command prints after its own output: the run's summary and where its results are.

The summary comes back with the run folder (``run_dir.meta``, written by `RunDir.finish`), or with
`alit_eval.errors.RunFinished` when a rerun finds the run already finished; nothing is read back from
disk that the run just wrote. Stdlib + typer at import time (``--help`` stays instant).
"""

from __future__ import annotations

from pathlib import Path
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


def show_finished(path: Path, summary: list[str]) -> None:
    """A rerun of a finished run: its stored table and summary, nothing recomputed."""
    typer.echo(f"{path} already holds this finished run; showing it (--overwrite recomputes it)")
    metrics, allocation = path / "metrics.csv", path / "allocation_summary.csv"
    if allocation.is_file():  # allocate's own table
        import json

        from alit_eval.cli.allocate import print_summary as print_allocation

        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        print_allocation(allocation, str(config.get("allocate", {}).get("criterion", "l1")))
        import pandas as pd

        from alit_eval.analysis.signal import flat_note

        note = flat_note(pd.read_csv(allocation))  # the flat-signal warning, as on the first run
        if note:
            typer.secho(note, fg="red", err=True)
    elif metrics.is_file():  # the per-budget table every other sweep command writes
        import pandas as pd

        from alit_eval.cli.fid import print_table

        table = pd.read_csv(metrics)
        if {"budget", "metric", "value"} <= set(table.columns) and table["budget"].notna().any():
            table = table[table["budget"].notna()].astype({"budget": "int64"})
            print_table(table)
    print_summary(summary)
    typer.echo(f"results: {path}")
