"""What every command prints after its own output: the run's summary and where its results are.

The summary comes back with the run folder (``run_dir.meta``, written by `RunDir.finish`); nothing is
read back from disk that the run just wrote (a rerun of a finished run: `alit_eval.cli.finished`).
Stdlib + typer at import time (``--help`` stays instant).
"""

from __future__ import annotations

import logging
from typing import Any

import typer

from alit_eval.errors import run_summary
from alit_eval.printable import printable


class _OnceFilter(logging.Filter):
    """Let each warning text through once per command (several sweeps of one run, or a check and its
    summary, must not print the same line twice); remembers them so the summary skips them too."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        if text in self.seen:
            return False
        self.seen.add(text)
        return True


ONCE = _OnceFilter()  # installed on the console log handler by `alit_eval.cli.app`


def print_summary(lines: list[str]) -> None:
    """Print a run's summary (`alit_eval.analysis.skeleton.summary_lines`); warnings go to stderr,
    except those already logged during the run (each warning is printed once)."""
    for line in map(printable, lines):  # summaries name files: no control codes reach the terminal
        if line.startswith("warning:") and line[len("warning:"):].strip() in ONCE.seen:
            continue
        if line.startswith("warning:"):
            typer.secho(line, fg="yellow", err=True)
        else:
            typer.echo(line)


def print_results(run_dir: Any) -> None:
    """The closing lines of a command: ``results: <folder>``, then the summary the run recorded."""
    typer.echo(f"results: {printable(run_dir.path)}")
    print_summary(run_summary(getattr(run_dir, "meta", None)))
