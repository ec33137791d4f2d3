"""A rerun of a finished run (`alit_eval.errors.RunFinished`): show its stored table and summary.

The CLI asks the analyses not to recompute a finished run; they raise `RunFinished` on entry and
`alit_eval.cli.app` shows the run with `show_finished`. Stdlib + typer at import time.
"""

from __future__ import annotations

from pathlib import Path

import typer

from alit_eval.cli.console import print_summary
from alit_eval.printable import printable


def show_finished(path: Path, summary: list[str]) -> None:
    """A rerun of a finished run: its stored table and summary, nothing recomputed."""
    typer.echo(f"{printable(path)} already holds this finished run; showing it (--overwrite recomputes it)")
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
    typer.echo(f"results: {printable(path)}")
