"""Finding and reading the run folders of `alit-eval report`: which folders (`expand`: a run, a
folder of runs, a results tree, a folder of figures; incomplete runs skipped with a note), and what
each holds (`load_run`: config, meta, metrics, tables, figures). `alit_eval.results.report` decides
what the report shows from them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from alit_eval.errors import AlitEvalError
from alit_eval.results.readers import read_json, read_table, safe_figures
from alit_eval.results.schema import pandas_dtypes


@dataclass
class Run:
    """One folder given to the report."""

    path: Path
    label: str
    command: str
    run_id: str
    config: dict[str, Any]
    meta: dict[str, Any] | None
    metrics: pd.DataFrame | None
    figures: list[Path]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    is_run: bool = True

    @property
    def extra(self) -> dict[str, Any]:
        extra = (self.meta or {}).get("extra")
        return extra if isinstance(extra, dict) else {}



def read_metrics(path: Path) -> pd.DataFrame:
    """Read a ``metrics.csv`` with the schema's dtypes (empty fields are missing values); a damaged or
    mistyped file is one `AlitEvalError` naming it."""
    return read_table(path, "metrics", dtype=pandas_dtypes("metrics"), keep_default_na=False,
                      na_values={c: [""] for c in ("budget", "value", "ci_low", "ci_high")})


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders behind `paths`: a run folder itself, every run folder directly inside a folder
    (e.g. ``results/fid``), a whole results tree (``results/<command>/<run_id>``, plus command
    folders of plain figures such as ``attention-viz``), or a plain folder of figures."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise AlitEvalError(f"{p}: no such folder; pass run folders such as results/fid/<run_id>")
        if (p / "config.json").is_file() or (p / "meta.json").is_file():
            out.append(p)
            continue
        inner = sorted(q for q in p.iterdir() if q.is_dir() and (q / "config.json").is_file())
        if not inner:
            inner = _tree_runs(p)
        complete = _complete(inner)
        if inner and not complete:
            raise AlitEvalError(f"{p} holds only incomplete runs (no meta.json); finish them by rerunning their "
                                "command, or name a run folder to report it anyway")
        if complete:
            out += complete
        elif any(p.rglob("*.png")):
            out.append(p)
        else:
            raise AlitEvalError(f"{p} is not an alit-eval run folder (no config.json) and holds no figures")
    return list(dict.fromkeys(out))


def _complete(runs: list[Path]) -> list[Path]:
    """The runs found inside a folder that finished (``meta.json``); each skipped one gets a one-line note.

    A failed or interrupted run leaves its folder without meta.json; it is only reported when named
    on its own (then with an "incomplete run" warning)."""
    out = []
    for run in runs:
        if (run / "config.json").is_file() and not (run / "meta.json").is_file():
            warnings.warn(f"skipping incomplete run {run} (no meta.json: interrupted, failed or still running)",
                          stacklevel=3)
            continue
        out.append(run)
    return out


def _tree_runs(root: Path) -> list[Path]:
    """Runs of a results tree ``root/<command>/<run_id>``; a command folder without runs but with
    PNGs directly inside (``attention-viz``) counts as one figures folder."""
    out: list[Path] = []
    for command in sorted(q for q in root.iterdir() if q.is_dir()):
        runs = sorted(r for r in command.iterdir() if r.is_dir() and (r / "config.json").is_file())
        out += runs or ([command] if any(command.glob("*.png")) else [])
    return out


def load_run(path: Path) -> Run:
    """Read one folder (see `expand`); missing files are allowed and reported as warnings."""
    def js(name: str) -> dict[str, Any] | None:
        f = path / name
        return read_json(f, what=f"the run's {name}") if f.is_file() else None

    config, meta = js("config.json"), js("meta.json")
    if config is None and meta is None:  # a folder of figures only
        figures = safe_figures(sorted(path.rglob("*.png"))[:60], path)[0]
        return Run(path, path.name, "figures", path.name, {}, None, None, figures, is_run=False)
    command = str((meta or {}).get("command") or path.parent.name)
    metrics = read_metrics(path / "metrics.csv") if (path / "metrics.csv").is_file() else None
    # Only real PNGs inside the run folder are embedded (a link to any other file must not be).
    figures = safe_figures(sorted((path / "figures").glob("*.png")), path)[0] if (path / "figures").is_dir() else []
    tables = {}
    for f in sorted(path.glob("*.csv")):
        if f.name != "metrics.csv":
            tables[f.name] = read_table(f)
    return Run(path, f"{command}/{path.name}", command, path.name, config or (meta or {}).get("config", {}),
               meta, metrics, figures, tables)


def unique_labels(runs: list[Run]) -> None:
    """Make run labels distinct: the results tree's name first, then a number."""
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
    for r in runs:
        if seen[r.label] > 1:
            r.label = f"{r.path.parent.parent.name}/{r.label}"
    counts: dict[str, int] = {}
    for r in runs:  # still equal (same names in different trees): number them
        counts[r.label] = counts.get(r.label, 0) + 1
        if counts[r.label] > 1:
            r.label = f"{r.label} ({counts[r.label]})"
