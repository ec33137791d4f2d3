"""Draw a `report.Report` as one self-contained HTML page and a Markdown summary beside it.

`build_report` (what `alit-eval report` calls) collects the runs with `report` and draws them here;
`report` never imports this module, so the two form no import cycle.

The HTML page embeds every figure as a base64 PNG and needs no network: plain HTML, a little
inline CSS and a tiny inline script that sorts a table when a header is clicked. The Markdown
file references copies of the figures under ``figures/`` by relative path. Tables carry
``data-table`` and images ``data-figure`` attributes so tests (and scripts) can find them.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from alit_eval.printable import printable, printable_text
from alit_eval.version import __version__
from alit_eval.results import report as rp
from alit_eval.results.report_runs import Run, expand
from alit_eval.results.atomic import write_bytes, writing
from alit_eval.results.rundir import config_hash

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1240px;
padding:16px 28px;color:#1d1d1f;background:#fff}
h1{font-size:24px;margin:8px 0}h2{font-size:19px;margin:28px 0 8px;border-bottom:2px solid #d0d7de;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.muted{color:#667}
table{border-collapse:collapse;margin:6px 0 12px;font-size:12.5px}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f3f5f8;cursor:pointer;position:sticky;top:0}td.t,th.t{text-align:left;white-space:normal}
tr:nth-child(even) td{background:#fafbfc}table.kv td:first-child{font-weight:600;background:#f3f5f8}
td.differ{background:#ffe3e3!important;font-weight:600}
.warn{background:#fff8e1;border:1px solid #f0c36d;border-radius:6px;padding:8px 14px;margin:10px 0}
.warn li{margin:2px 0}.note{background:#eef4ff;border:1px solid #b6ccf2;border-radius:6px;padding:6px 12px}
figure{display:inline-block;margin:8px 12px 8px 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #e1e4e8}figcaption{font-size:12px;color:#555}
details{margin:6px 0}summary{cursor:pointer;color:#0b5cad}pre{background:#f6f8fa;padding:8px;overflow:auto;
font-size:12px;max-height:420px}nav a{margin-right:12px}.wide{overflow-x:auto}
"""

SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th){th.addEventListener('click',function(){
var t=th.closest('table'),b=t.tBodies[0],i=th.cellIndex,asc=th.dataset.dir!=='asc';th.dataset.dir=asc?'asc':'desc';
function k(td){var v=td.getAttribute('data-v');return v!==null&&v!==''?parseFloat(v):td.textContent;}
Array.from(b.rows).sort(function(r,s){var x=k(r.cells[i]),y=k(s.cells[i]),c;
if(typeof x==='number'&&typeof y==='number'){c=x-y;}else if(typeof x==='number'){c=-1;}
else if(typeof y==='number'){c=1;}else{c=String(x).localeCompare(String(y));}return asc?c:-c;})
.forEach(function(r){b.appendChild(r);});});});
"""


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def fmt(v: Any) -> str:
    """A cell as text: 4 significant digits for floats, a dash for missing values."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "—"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return printable(v)  # cells may hold file names: no control codes in the page or the Markdown


def _num(v: Any) -> str | None:
    if isinstance(v, bool) or v is None or v is pd.NA:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else repr(f)


def html_table(df: pd.DataFrame, kind: str, *, highlight: set[tuple[int, str]] | None = None,
               max_rows: int | None = None, text: bool = False, cls: str = "sortable") -> str:
    """An HTML table (sortable by default); `highlight` marks (row position, column) cells; `text`
    treats every cell as text (left-aligned, no numeric sort key)."""
    highlight = highlight or set()
    cols = list(df.columns)
    head = "".join(f'<th class="t">{html.escape(str(c))}</th>' if text or df[c].dtype == object else
                   f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    shown = df if max_rows is None else df.head(max_rows)
    for i, row in enumerate(shown.itertuples(index=False)):
        cells = []
        for c, v in zip(cols, row):
            num = None if text else _num(v)
            classes = [] if num is not None else ["t"]
            if (i, c) in highlight:
                classes.append("differ")
            attr = (f' data-v="{num}"' if num is not None else "") + (f' class="{" ".join(classes)}"'
                                                                       if classes else "")
            cells.append(f"<td{attr}>{html.escape(fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = "" if max_rows is None or len(df) <= max_rows else \
        f'<p class="muted">{len(df) - max_rows} more rows not shown (see the CSV file).</p>'
    return (f'<div class="wide"><table class="{cls}" data-table="{html.escape(kind)}"><thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table></div>{more}')


def md_table(df: pd.DataFrame, max_rows: int | None = None) -> str:
    shown = df if max_rows is None else df.head(max_rows)

    def cell(v: Any) -> str:
        return fmt(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    if max_rows is not None and len(df) > max_rows:
        lines.append(f"\n*{len(df) - max_rows} more rows not shown.*")
    return "\n".join(lines) + "\n"


def _img(path: Path, name: str, kind: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(name)}" data-figure="{html.escape(kind)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(name)}</figcaption></figure>')


class _Doc:
    """HTML and Markdown written side by side."""

    def __init__(self) -> None:
        self.h: list[str] = []
        self.m: list[str] = []

    def heading(self, level: int, text: str, anchor: str | None = None) -> None:
        a = f' id="{anchor}"' if anchor else ""
        text = printable(text)  # headings and paragraphs name runs and files
        self.h.append(f"<h{level}{a}>{html.escape(text)}</h{level}>")
        self.m.append(f"\n{'#' * level} {text}\n")

    def para(self, text: str, cls: str | None = None) -> None:
        c = f' class="{cls}"' if cls else ""
        text = printable(text)
        self.h.append(f"<p{c}>{html.escape(text)}</p>")
        self.m.append(f"{'> ' if cls == 'note' else ''}{text}\n")

    def table(self, df: pd.DataFrame, kind: str, **kw: Any) -> None:
        self.h.append(html_table(df, kind, **kw))
        self.m.append(md_table(df, kw.get("max_rows")))

    def link_csv(self, df: pd.DataFrame, name: str, kind: str, folder: Path) -> None:
        """Write `df` as a CSV beside the report and link it (with its size) instead of a table."""
        from alit_eval.results.atomic import write_csv

        path = write_csv(df, folder / f"{slug(Path(name).stem)}.csv")
        rel = f"{folder.parent.name}/{folder.name}/{path.name}"
        text = f"{len(df)} rows x {len(df.columns)} columns ({', '.join(map(str, df.columns[:8]))}"
        text += ", ...)" if len(df.columns) > 8 else ")"
        self.h.append(f'<p data-csv="{html.escape(kind)}"><a href="{html.escape(rel)}">{html.escape(rel)}</a>: '
                      f"{html.escape(text)}</p>")
        self.m.append(f"[{rel}]({rel}): {text}\n")

    def figure(self, path: Path, name: str, kind: str, rel: str) -> None:
        name = printable(name)
        self.h.append(_img(path, name, kind))
        self.m.append(f"![{name}]({rel})\n")


def write_report(report: rp.Report, folder: Path, *, title: str) -> tuple[Path, Path]:
    """Render `report` into ``folder/report.html`` and ``folder/report.md`` (+ ``figures/``)."""
    from alit_eval.results import plots

    folder.mkdir(parents=True, exist_ok=True)
    figs = folder / "figures"
    if figs.is_dir():
        shutil.rmtree(figs)  # a regenerated report must not keep figures of runs no longer in it
    if (folder / "tables").is_dir():
        shutil.rmtree(folder / "tables")
    figs.mkdir()
    d = _Doc()
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    d.h.append(f"<h1>{html.escape(title)}</h1>")
    d.m.append(f"# {title}\n")
    d.para(f"Generated {now} by alit-eval {__version__} from {len(report.runs)} folder(s).", "muted")
    d.h.append("<nav>" + "".join(f'<a href="#run-{i}">{html.escape(printable(r.label))}</a>'
                                 for i, r in enumerate(report.runs)) + "</nav>")
    if report.warnings:
        merged: dict[str, list[str]] = {}  # one line per message, naming every run it concerns
        for lbl, w in report.warnings:  # warnings quote skipped and duplicate file names
            merged.setdefault(printable(w), []).append(printable(lbl))
        d.heading(2, "Warnings", "warnings")
        d.h.append('<ul class="warn">' + "".join(f"<li><b>{html.escape(', '.join(lbls))}</b>: {html.escape(w)}</li>"
                                                 for w, lbls in merged.items()) + "</ul>")
        d.m += [f"- **{', '.join(lbls)}**: {w}" for w, lbls in merged.items()] + [""]
    if len(report.series) > 1 or report.notes:
        _comparison(d, report, figs, plots)
    for i, run in enumerate(report.runs):
        _run_section(d, run, i, figs)
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>'
            f'<body>{"".join(d.h)}<script>{SCRIPT}</script></body></html>\n')
    # The last guard: whatever text reached the page, no terminal control code is written (`cat report.md`).
    html_path = write_bytes(printable_text(page).encode("utf-8"), folder / "report.html")
    md_path = write_bytes(printable_text("\n".join(d.m) + "\n").encode("utf-8"), folder / "report.md")
    return html_path, md_path


def _comparison(d: _Doc, report: rp.Report, figs: Path, plots: Any) -> None:
    d.heading(2, "Comparison", "comparison")
    cond = pd.DataFrame([{"series": s.label, "checkpoint": s.checkpoint, **{k: s.conditions[k] for k in rp.CONDITIONS}}
                         for s in report.series])
    cond.columns = ["series", "checkpoint", "dataset", "images", "preprocess", "FID reference", "FID resize"]
    names = dict(zip(rp.CONDITIONS, cond.columns[2:]))
    mark = {(i, names[k]) for i, k in rp.odd_cells(report.series)}
    if report.differing:
        base = [k for k in report.differing if k in rp.BASE_CONDITIONS]
        text = "Conditions differ between these runs: " + ", ".join(names[k] for k in report.differing) + ". "
        text += ("Numbers are only put in one table or plot when dataset, number of images and preprocess "
                 "mode match" if base else "rFID is only compared when the FID reference and resize match") + "."
        d.para(text, "note")
    elif len(report.series) > 1:
        d.para("All series share dataset, number of images, preprocess mode, FID reference and FID resize.", "note")
    d.table(cond, "conditions", highlight=mark)
    for label, note in report.notes:
        d.para(f"{label} {note}.", "muted")
    compared = [g for g in report.groups if g.table is not None]
    if not compared and len(report.series) > 1:
        d.para("No two series share their conditions, so there is no comparison table.", "note")
    for k, g in enumerate(compared, 1):
        c = g.conditions
        d.heading(3, f"{c['dataset']}: {c['dataset_size']} images, preprocess {c['preprocess']}")
        if not g.fid_comparable:
            d.para("rFID is left out of this comparison: the series use different FID references or resize "
                   "conventions (see the conditions table).", "note")
        d.table(g.table, f"comparison-{k}")
        plots.set_theme()  # drawn whatever the figure formats (even none), so not left to the CLI
        fig = plots.metrics_vs_tokens(rp.comparison_long(g), hue="series",
                                      title=f"{c['dataset']}, n={c['dataset_size']}: one curve per run (checkpoint)")
        paths = plots.save(fig, figs, f"comparison_{k}", formats=("png",))  # embedded as PNG data
        d.figure(paths[0], f"comparison {k}: metrics vs tokens", f"comparison/{k}", f"figures/{paths[0].name}")


def _run_section(d: _Doc, run: Run, i: int, figs: Path) -> None:
    d.heading(2, run.label, f"run-{i}")
    d.table(pd.DataFrame(rp.provenance(run), columns=["field", "value"]), f"provenance/{run.label}", text=True,
            cls="kv")
    if run.config:
        d.h.append("<details><summary>configuration (config.json)</summary><pre>"
                   + html.escape(json.dumps(run.config, indent=2)) + "</pre></details>")
    compared = rp.compare_tables(run)
    if compared:
        d.heading(3, "Tokenizer comparison")
        for note in run.extra.get("notes") or []:
            d.para(str(note), "note")
        for k, (title, table) in enumerate(compared):
            d.para(title, "muted")
            d.table(table, f"compare/{run.label}/{k}", max_rows=rp.MAX_CSV_ROWS)
    rows = rp.fixed_rows(run.metrics)
    for ds in dict.fromkeys(rows["dataset"]):
        d.heading(3, f"Reconstruction per token budget: {ds}")
        d.table(rp.headline_table(rows[rows["dataset"] == ds]), f"headline/{run.label}/{ds}")
    alloc = rp.allocation_table(run.metrics)
    if alloc is not None:
        d.heading(3, "Selected tokens per threshold")
        d.table(alloc, f"allocation/{run.label}")
    for name, table in run.tables.items():
        d.heading(3, name)
        if len(table) > rp.INLINE_MAX_ROWS:  # a per-image table: linked as a CSV file, not drawn inline
            d.link_csv(table, name, f"csv/{run.label}/{name}", figs.parent / "tables" / slug(run.label))
        else:
            d.table(table, f"csv/{run.label}/{name}")
    if run.metrics is not None and len(run.metrics):
        d.h.append(f"<details><summary>all {len(run.metrics)} rows of metrics.csv</summary>")
        d.h.append(html_table(run.metrics, f"metrics/{run.label}", max_rows=1000))
        d.h.append("</details>")
        d.m.append(f"All {len(run.metrics)} metric rows: `{printable(run.path / 'metrics.csv')}`.\n")
    if run.figures:
        d.heading(3, "Figures")
        sub = figs / slug(run.label)
        sub.mkdir(parents=True, exist_ok=True)
        for p in run.figures:
            rel = p.relative_to(run.path) if run.path in p.parents else Path(p.name)
            target = sub / slug(str(rel.with_suffix(""))).replace("figures_", "", 1)
            target = target.with_suffix(".png")
            shutil.copyfile(p, target)
            d.figure(p, str(rel.with_suffix("")), f"{run.label}/{rel.with_suffix('')}",
                     f"figures/{sub.name}/{target.name}")


def default_name(runs: list[Path]) -> str:
    """Report folder name: ``<command>-<run_id>`` for one run, ``compare-<hash>`` for several."""
    if len(runs) == 1:
        return f"{runs[0].parent.name}-{runs[0].name}"
    return "compare-" + config_hash({"runs": [str(p.resolve()) for p in runs]})


def build_report(paths: Iterable[str | Path], *, out: str | Path | None = None, results_dir: str | Path = "results",
                 name: str | None = None, title: str | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (+ ``figures/``) for the runs.

    Args:
        paths: run folders (or folders of runs, see `expand`).
        out: output folder; default ``<results_dir>/report/<name>``.
        results_dir: results root (``--results-dir``).
        name: report folder name; default `default_name`.
        title: page title.

    Returns:
        Paths of the HTML page and the Markdown summary.
    """
    folders = expand(paths)
    report = rp.collect(folders)
    folder = Path(out) if out is not None else Path(results_dir) / "report" / (name or default_name(folders))
    with writing(folder):  # a read-only or full output folder is one error line
        return write_report(report, folder, title=title or "alit-eval report")
