"""``alit-eval models``: the pretrained checkpoints, grouped by tokenizer family, and where they are."""

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
    """List the pretrained checkpoints alit-eval knows, by family, and whether each is on this machine.

    One table per tokenizer family (ALIT, KARL, One-D-Piece, TiTok), with the family's budgets and
    inference options. Shows each name (pass it to --ckpt), its architecture, training set, official
    file name, whether it is cached (or bundled) and its sha256 when known. Nothing is downloaded.

    Example:

        alit-eval models
        alit-eval models --json
    """
    from alit_eval.paths import checkpoints_dir

    rows = _model_rows()
    cache = checkpoints_dir()
    groups = _family_groups(rows)
    if as_json:
        typer.echo(json.dumps({"checkpoints_dir": str(cache), "families": groups, "models": rows}, indent=2))
        return
    _print_tables(rows, groups, cache)


def _model_rows() -> list[dict]:
    """One row per pretrained checkpoint: its release facts, local state and option defaults."""
    from alit_eval.tokenizers.family_options import all_option_names
    from alit_eval.tokenizers.pretrained import PRETRAINED
    from alit_eval.tokenizers.resolve import local_status

    rows = []
    for name, entry in PRETRAINED.items():
        status = local_status(entry)
        rows.append({
            "name": name, "preset": entry.preset, "base": entry.base, "quantized": entry.quantized,
            "train_set": entry.train_set, "filename": entry.filename, "status": status.state,
            "path": str(status.path), "sha256": status.sha256, "url": entry.url, "source": entry.source,
            "preprocess": entry.preprocess, "licence": entry.licence,
            "notes": entry.notes, "family": entry.family, "hf_repo": entry.hf_repo,
            "remote_filename": entry.remote_filename, "budgets": entry.budgets,
            # every declared inference option: the entry's default (None where its family lacks it)
            **{name: getattr(entry, name) for name in all_option_names()},
            "precision": entry.precision,
        })
    return rows


def _family_groups(rows: list[dict]) -> dict[str, dict]:
    """Per family: title, summary, budgets, inference options and the names of its checkpoints."""
    from alit_eval.tokenizers.families import FAMILIES

    return {
        name: {"title": fam.title, "summary": fam.summary, "budgets": fam.budgets,
               "options": {o.name: o.default for o in fam.options},
               "option_details": {o.name: {"default": o.default, "accepts": o.bounds_text(), "help": o.help,
                                           "changes_numbers": o.changes_numbers} for o in fam.options},
               "random": fam.random, "attention": fam.has_attention,
               "models": [r["name"] for r in rows if r["family"] == name]}
        for name, fam in FAMILIES.items()
    }


def _print_tables(rows: list[dict], groups: dict[str, dict], cache: object) -> None:
    """One rich table per family, as wide as the terminal allows, then where the cache is."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(highlight=False)
    full = ("name", "preset", "base", "quantised", "train set", "file", "status", "sha256")
    # The name spells preset, base, quantisation and training set, so a narrow terminal gets
    # only what the name cannot say (--json has everything).
    wide = Measurement.get(console, console.options.update_width(10_000), _table(rows, full, "")).maximum <= console.width
    for name, group in groups.items():
        members = [r for r in rows if r["family"] == name]
        options = ", ".join(f"--{k.replace('_', '-')} {d['accepts']} (default {d['default']!r})"
                            for k, d in group["option_details"].items()) or "none"
        title = (f"{group['title']} ({name}): {group['summary']}\n"
                 f"budgets: {group['budgets']}; inference options: {options}")
        if not members:  # a family without pretrained checkpoints: load its files with --ckpt PATH
            console.print(title + "\nno pretrained checkpoints; evaluate a file with --ckpt PATH")
            console.print()
            continue
        console.print(_table(members, full if wide else ("name", "status", "sha256"), title))
        console.print()
    console.print(f"cache: {cache}  (set ALIT_EVAL_CACHE to move it; files go in <train set>/<file>, "
                  "Hugging Face files under the name `--json` shows as filename)")
    if not wide:
        console.print("(a wider terminal shows preset, base, training set and file; --json shows all)", style="dim")
    console.print("alit_tiny is a preset of the official code but was never released.", style="dim")


def _table(rows: list[dict], headers: tuple[str, ...], title: str) -> "Table":
    from rich import box
    from rich.table import Table

    table = Table(title=title or None, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0), show_edge=False)
    for header in headers:
        table.add_column(header, no_wrap=True)
    for row in rows:
        cells = {
            "name": row["name"], "preset": row["preset"], "base": row["base"],
            "quantised": "yes" if row["quantized"] else "no", "train set": row["train_set"],
            "file": f"{row['hf_repo']}/{row['remote_filename']}" if row["hf_repo"] else row["filename"],
            "status": f"[{_STATE_STYLE.get(row['status'], '')}]{row['status']}[/]",
            "sha256": (row["sha256"][:12] + "…") if row["sha256"] else "unknown",
        }
        table.add_row(*(cells[h] for h in headers))
    return table
