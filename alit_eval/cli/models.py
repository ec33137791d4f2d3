"""``alit-eval models``: the table of pretrained checkpoints and where they are on this machine."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.table import Table

_STATE_STYLE = {"cached": "green", "bundled": "green", "not cached": "yellow", "not yet bundled": "red"}


def models(
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table."),
) -> None:
    """List the pretrained checkpoints alit-eval knows and whether each is on this machine.

    Shows each name (pass it to --ckpt or to `convert`), its architecture, training set, official
    file name, whether it is cached (or bundled) and its sha256 when known. Nothing is downloaded.

    Example:

        alit-eval models
        alit-eval models --json
    """
    from alit_eval.paths import checkpoints_dir
    from alit_eval.tokenizers.pretrained import PRETRAINED, local_status

    rows = []
    for name, entry in PRETRAINED.items():
        status = local_status(entry)
        rows.append({
            "name": name, "preset": entry.preset, "base": entry.base, "quantized": entry.quantized,
            "train_set": entry.train_set, "filename": entry.filename, "status": status.state,
            "path": str(status.path), "sha256": status.sha256, "url": entry.url, "source": entry.source,
            "halting": entry.halting, "preprocess": entry.preprocess, "licence": entry.licence,
            "notes": entry.notes,
        })
    cache = checkpoints_dir()
    if as_json:
        typer.echo(json.dumps({"checkpoints_dir": str(cache), "models": rows}, indent=2))
        return

    from rich.console import Console
    from rich.measure import Measurement

    console = Console(highlight=False)
    full = ("name", "preset", "base", "quantised", "train set", "file", "status", "sha256")
    table = _table(rows, full)
    # The name spells preset, base, quantisation and training set, so a narrow terminal gets
    # only what the name cannot say (--json has everything).
    wide = Measurement.get(console, console.options.update_width(10_000), table).maximum <= console.width
    if not wide:
        table = _table(rows, ("name", "status", "sha256"))
    console.print(table)
    console.print(f"cache: {cache}  (set ALIT_EVAL_CACHE to move it; files go in <train set>/<file>)")
    if not wide:
        console.print("(a wider terminal shows preset, base, training set and file; --json shows all)", style="dim")
    console.print("alit_tiny is a preset of the official code but was never released.", style="dim")


def _table(rows: list[dict], headers: tuple[str, ...]) -> "Table":
    from rich import box
    from rich.table import Table

    table = Table(title="Pretrained checkpoints", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0), show_edge=False)
    for header in headers:
        table.add_column(header, no_wrap=True)
    for row in rows:
        cells = {
            "name": row["name"], "preset": row["preset"], "base": row["base"],
            "quantised": "yes" if row["quantized"] else "no", "train set": row["train_set"],
            "file": row["filename"],
            "status": f"[{_STATE_STYLE.get(row['status'], '')}]{row['status']}[/]",
            "sha256": (row["sha256"][:12] + "…") if row["sha256"] else "unknown",
        }
        table.add_row(*(cells[h] for h in headers))
    return table
