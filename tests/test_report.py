"""`alit-eval report`: every table and figure present, comparisons only under matching conditions."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from alit_eval.cli.app import app
from alit_eval.errors import AlitEvalError
from alit_eval.results.atomic import write_csv, write_json
from alit_eval.results.report_runs import expand
from alit_eval.results.report_html import build_report
from alit_eval.results.schema import format_condition, metrics_frame

COLORS = iter([(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200), (200, 30, 200)] * 20)


class Page(HTMLParser):
    """Tables (by data-table: header + rows of cell texts), images (data-figure -> bytes), notes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.differ: dict[str, list[str]] = {}
        self.images: dict[str, bytes] = {}
        self.text: list[str] = []
        self._table = None
        self._cell: list[str] | None = None
        self._cls = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "data-table" in a:
            self._table = a["data-table"]
            self.tables[self._table] = []
            self.differ[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell, self._cls = [], a.get("class") or ""
        elif tag == "img":
            src = a["src"]
            assert src.startswith("data:image/png;base64,")
            self.images[a["data-figure"]] = base64.b64decode(src.split(",", 1)[1])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            self.tables[self._table][-1].append(text)
            if "differ" in self._cls:
                self.differ[self._table].append(text)
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(self.text)


def png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), next(COLORS)).save(path)


def make_run(root: Path, command: str, run_id: str, *, source: str = "demo-scenes", n: int = 10,
             preprocess: str = "generated", budgets=(4, 8, 16), resize: str = "tf1", shift: float = 0.0,
             meta: bool = True, extra: dict | None = None, rows: list | None = None, config: dict | None = None,
             figures=("metrics_vs_tokens", "examples")) -> Path:
    path = root / command / run_id
    cfg = config or {"checkpoint": {"name": run_id, "sha256": "ab" * 32}, "budgets": list(budgets), "fid": True,
                     "data": {"source": source, "kind": "demo", "preprocess": preprocess, "n": n}, "seed": 0,
                     "fid_resize": resize, "fid_reference": "originals", "halting": "seeded"}
    write_json(cfg, path / "config.json")
    base = {"command": command, "dataset": Path(source).name, "preprocess": preprocess, "n": n}
    out = list(rows or [])
    for b in budgets:
        for metric, v in (("l1", 0.3 - b / 100 + shift), ("psnr", 10 + b + shift), ("ssim", 0.2 + b / 50),
                          ("lpips", 0.5 - b / 100)):
            out.append({**base, "budget": b, "metric": metric, "value": v, "ci_low": v - 0.01, "ci_high": v + 0.01})
        out.append({**base, "budget": b, "metric": "rfid", "value": 50.0 / b + shift,
                    "condition": format_condition(reference="originals", resize=resize)})
    write_csv(metrics_frame(out), path / "metrics.csv")
    for name in figures:
        png(path / "figures" / f"{name}.png")
    if meta:
        write_json({"command": command, "run_id": run_id, "config": cfg, "seed": 0, "device": "cpu",
                    "extra": {"lpips": "computed", "precision": "fp32", "skipped_images": [], **(extra or {})}},
                   path / "meta.json")
    return path


def render(paths, out: Path) -> tuple[Page, str]:
    html_path, md_path = build_report(paths, out=out)
    assert html_path == out / "report.html" and md_path == out / "report.md"
    text = html_path.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text  # self-contained: nothing to fetch
    return Page(text), md_path.read_text(encoding="utf-8")


def check_figures(page: Page, md: str, out: Path, run: Path, label: str) -> None:
    for f in sorted((run / "figures").glob("*.png")):
        key = f"{label}/figures/{f.stem}"
        assert page.images[key] == f.read_bytes()
        folder = label.replace("/", "_")
        links = [line for line in md.splitlines() if line.startswith(f"![figures/{f.stem}](figures/{folder}/")]
        assert links, f"{f.name} not in report.md"
        rel = links[0].split("](", 1)[1].rstrip(")")
        assert (out / rel).read_bytes() == f.read_bytes()


def test_single_run_report(tmp_path):
    run = make_run(tmp_path / "results", "fid", "a")
    page, md = render([run], tmp_path / "out")
    head = page.tables["headline/fid/a/demo-scenes"]
    assert head[0][:4] == ["tokens", "rFID", "L1", "L1 95% CI"]
    assert [r[0] for r in head[1:]] == ["4", "8", "16"]
    for col in ("rFID", "L1", "PSNR", "SSIM", "LPIPS", "images"):
        assert col in head[0]
    l1 = head[0].index("L1")
    assert float(head[2][l1]) == pytest.approx(0.3 - 0.08, abs=1e-3)
    prov = dict(page.tables["provenance/fid/a"][1:])
    assert prov["command"] == "fid" and prov["checkpoint"].startswith("a (sha256 abab")
    assert "comparison" not in " ".join(page.tables)  # a single run: nothing to compare
    check_figures(page, md, tmp_path / "out", run, "fid/a")
    assert "| tokens |" in md and "## fid/a" in md


def test_matching_runs_are_compared(tmp_path):
    a = make_run(tmp_path, "fid", "a")
    b = make_run(tmp_path, "fid", "b", shift=0.05)
    page, md = render([a, b], tmp_path / "out")
    table = page.tables["comparison-1"]
    header = table[0]
    named = {"L1 · fid/a (a)", "L1 · fid/b (b)", "L1 Δ (2nd − 1st)", "rFID · fid/a (a)", "rFID · fid/b (b)"}
    assert named <= set(header)
    delta = header.index("L1 Δ (2nd − 1st)")
    assert all(float(r[delta]) == pytest.approx(0.05) for r in table[1:])
    assert "comparison/1" in page.images and page.differ["conditions"] == []
    for run, label in ((a, "fid/a"), (b, "fid/b")):
        check_figures(page, md, tmp_path / "out", run, label)
        assert f"headline/{label}/demo-scenes" in page.tables


def test_different_conditions_are_never_mixed(tmp_path):
    a = make_run(tmp_path, "fid", "a")
    b = make_run(tmp_path, "fid", "b", shift=0.01)
    c = make_run(tmp_path, "fid", "c", preprocess="center-crop")
    d = make_run(tmp_path, "fid", "d", n=5)
    e = make_run(tmp_path, "fid", "e", source="/data/other")
    page, _ = render([a, b, c, d, e], tmp_path / "out")
    cond = page.tables["conditions"]
    assert cond[0] == ["series", "checkpoint", "dataset", "images", "preprocess", "FID reference", "FID resize"]
    assert {"center-crop", "5", "/data/other"} <= set(page.differ["conditions"])
    text = page.all_text
    assert "Conditions differ" in text and "preprocess" in text and "images" in text
    compared = [k for k in page.tables if k.startswith("comparison-")]
    assert compared == ["comparison-1"]
    header = " ".join(page.tables["comparison-1"][0])
    assert "fid/a" in header and "fid/b" in header
    assert not any(lbl in header for lbl in ("fid/c", "fid/d", "fid/e"))


def test_rfid_left_out_when_fid_resize_differs(tmp_path):
    a = make_run(tmp_path, "fid", "a")
    b = make_run(tmp_path, "fid", "b", resize="pytorch-fid")
    page, _ = render([a, b], tmp_path / "out")
    header = page.tables["comparison-1"][0]
    assert any(h.startswith("L1 ·") for h in header) and not any(h.startswith("rFID") for h in header)
    assert "rFID is left out" in page.all_text and "pytorch-fid" in page.differ["conditions"]


def test_allocation_table_and_warnings(tmp_path):
    base = {"command": "allocate", "dataset": "demo-scenes", "preprocess": "generated", "n": 10}
    rows = []
    for thr, tokens, cens in ((0.05, 12.5, 0.2), (0.09, 6.0, 0.0)):
        c = format_condition(criterion="l1", fallback="min-error", threshold=thr)
        rows += [{**base, "metric": "mean_tokens", "value": tokens, "ci_low": tokens - 1, "ci_high": tokens + 1,
                  "condition": c},
                 {**base, "metric": "censored_share", "value": cens, "condition": c},
                 {**base, "metric": "l1", "value": 0.2, "condition": c},
                 {**base, "metric": "rfid", "value": 9.0, "condition": format_condition(
                     criterion="l1", fallback="min-error", threshold=thr, reference="originals", resize="tf1",
                     selection="variable")},
                 {**base, "metric": "rfid", "value": 11.0, "condition": format_condition(
                     criterion="l1", fallback="min-error", threshold=thr, reference="originals", resize="tf1",
                     selection="shuffled")}]
    run = make_run(tmp_path, "allocate", "x", rows=rows, extra={
        "skipped_images": [{"id": "bad.jpg", "error": "cannot identify image file"}],
        "lpips": "LPIPS skipped: AlexNet ImageNet weights not found", "precision": "bf16",
        "approximate_precision": True})
    partial = make_run(tmp_path, "fid", "partial", meta=False, n=3)
    page, md = render([run, partial], tmp_path / "out")
    alloc = page.tables["allocation/allocate/x"]
    header = alloc[0]
    assert {"threshold", "mean_tokens", "censored_share", "variable rFID", "shuffled rFID"} <= set(header)
    assert [(r[header.index("variable rFID")], r[header.index("shuffled rFID")]) for r in alloc[1:]] == [("9", "11")] * 2
    assert [r[header.index("mean_tokens")] for r in alloc[1:]] == ["12.5", "6"]
    warnings = page.all_text
    for needle in ("bad.jpg", "LPIPS skipped", "approximate precision (bf16)", "censored allocation",
                   "0.05 (20%)", "incomplete run", "rFID from 10 image(s)"):
        assert needle in warnings, needle
    assert "0.09 (0%)" not in warnings
    assert "**allocate/x**: 1 image(s) could not be decoded" in md


def test_reused_sweep_is_not_compared_twice(tmp_path):
    a = make_run(tmp_path, "fid", "a")
    cfg = {"from_run": str(a.resolve()), "sweep": json.loads((a / "config.json").read_text())}
    b = make_run(tmp_path, "allocate", "b", config=cfg)
    page, _ = render([a, b], tmp_path / "out")
    assert "has the same sweep as fid/a" in page.all_text
    assert not any(k.startswith("comparison-") for k in page.tables)


def test_folders_of_runs_and_of_figures(tmp_path):
    make_run(tmp_path / "results", "fid", "a")
    make_run(tmp_path / "results", "fid", "b")
    viz = tmp_path / "attention-viz"
    png(viz / "img0_layer5_corrected.png")
    page, _ = render([tmp_path / "results" / "fid", viz], tmp_path / "out")
    assert {"headline/fid/a/demo-scenes", "headline/fid/b/demo-scenes", "comparison-1"} <= set(page.tables)
    assert page.images["attention-viz/img0_layer5_corrected"] == (viz / "img0_layer5_corrected.png").read_bytes()
    with pytest.raises(AlitEvalError, match="not an alit-eval run folder"):
        build_report([_empty(tmp_path)], out=tmp_path / "o2")
    with pytest.raises(AlitEvalError, match="no such folder"):
        build_report([tmp_path / "missing"], out=tmp_path / "o3")


def _empty(tmp_path: Path) -> Path:
    p = tmp_path / "empty"
    p.mkdir()
    (p / "notes.txt").write_text("x")
    return p


@pytest.mark.figures
def test_report_of_a_real_fid_run(tiny_ckpt, tmp_path):
    import torch

    from alit_eval.analysis.reconstruction import run
    from alit_eval.engine.config import SweepConfig

    torch.set_num_threads(1)
    req = SweepConfig(ckpt=str(tiny_ckpt), data="demo-scenes", limit=3, batch_size=3, fid=False, halting="seeded")
    run_dir, _ = run(req, seed=0, device="cpu", offline=True, results_dir=tmp_path / "results", run_id="real",
                     progress=False)
    res = CliRunner().invoke(app, ["--results-dir", str(tmp_path / "results"), "report", str(run_dir.path)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "results" / "report" / "fid-real"
    page = Page((out / "report.html").read_text(encoding="utf-8"))
    head = page.tables["headline/fid/real/demo-scenes"]
    assert [r[0] for r in head[1:]] == ["4", "8", "12", "16"] and "rFID" not in head[0]
    assert {"fid/real/figures/metrics_vs_tokens", "fid/real/figures/examples"} <= set(page.images)
    assert "LPIPS skipped" in page.all_text or "lpips" in " ".join(head[0]).lower()
    assert (out / "report.md").is_file()


def test_expand_reads_a_whole_results_tree(tmp_path):
    tree = tmp_path / "results"
    for run in ("fid/aaa", "fid/bbb", "allocate/ccc"):
        (tree / run).mkdir(parents=True)
        (tree / run / "config.json").write_text("{}")
        (tree / run / "meta.json").write_text("{}")  # complete: incomplete runs are skipped (test_cli_ux.py)
    (tree / "attention-viz").mkdir()
    Image.new("RGB", (4, 4)).save(tree / "attention-viz" / "maps.png")
    (tree / "report" / "figures").mkdir(parents=True)  # a report written into the tree: not a run
    Image.new("RGB", (4, 4)).save(tree / "report" / "figures" / "x.png")
    (tree / "empty").mkdir()
    assert expand([tree]) == [tree / "allocate/ccc", tree / "attention-viz", tree / "fid/aaa", tree / "fid/bbb"]
    assert expand([tree / "fid"]) == [tree / "fid/aaa", tree / "fid/bbb"]


def test_series_name_their_checkpoint_and_long_tables_are_linked_csvs(tmp_path):
    """The comparison names each series' checkpoint (a `checkpoint.*` file by its folder); a per-image
    table longer than INLINE_MAX_ROWS is a linked CSV beside the report, a short one stays inline."""
    import pandas as pd

    from alit_eval.results.report import INLINE_MAX_ROWS

    a = make_run(tmp_path, "fid", "a")
    b = make_run(tmp_path, "fid", "b", extra={"checkpoint": {"name": "checkpoint", "path": "runs/exp7/checkpoint.pt"}})
    long = pd.DataFrame({"image_id": [f"img{i}" for i in range(INLINE_MAX_ROWS + 5)], "l1": 0.1})
    write_csv(long, a / "per_image_selection.csv")
    write_csv(long.head(3), a / "short.csv")
    page, md = render([a, b], tmp_path / "out")
    cond = page.tables["conditions"]
    assert [r[1] for r in cond[1:]] == ["a", "exp7"]
    assert {"L1 · fid/a (a)", "L1 · fid/b (exp7)"} <= set(page.tables["comparison-1"][0])
    assert "csv/fid/a/short.csv" in page.tables and "csv/fid/a/per_image_selection.csv" not in page.tables
    linked = tmp_path / "out" / "tables" / "fid_a" / "per_image_selection.csv"
    pd.testing.assert_frame_equal(pd.read_csv(linked), long)
    html_text = (tmp_path / "out" / "report.html").read_text()
    assert 'href="tables/fid_a/per_image_selection.csv"' in html_text
    assert "(tables/fid_a/per_image_selection.csv)" in md


def test_figure_formats_default_to_png_and_pdf_follow_the_environment_and_none_draws_none(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alit_eval.results import plots

    def saved(name: str) -> list[str]:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        return [p.name for p in plots.save(fig, tmp_path, name)]

    monkeypatch.delenv("ALIT_EVAL_FIGURE_FORMATS", raising=False)  # the suite's conftest sets none
    assert saved("a") == ["a.png", "a.pdf"]
    assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF-")
    monkeypatch.setenv("ALIT_EVAL_FIGURE_FORMATS", " SVG, png ,svg")
    assert saved("b") == ["b.svg", "b.png"]
    monkeypatch.setenv("ALIT_EVAL_FIGURE_FORMATS", "png,jpeg")
    with pytest.raises(AlitEvalError, match="ALIT_EVAL_FIGURE_FORMATS='png,jpeg': use none or a comma-separated"):
        saved("c")
    assert not list(tmp_path.glob("c.*")) and not plt.get_fignums()  # nothing half-written, the figure closed
    monkeypatch.setenv("ALIT_EVAL_FIGURE_FORMATS", " None ")  # no figures at all
    assert not plots.drawing() and saved("d") == [] and not plt.get_fignums()
    fig, _ = plt.subplots()
    assert [p.name for p in plots.save(fig, tmp_path, "e", formats=("png",))] == ["e.png"]  # the report's own
    monkeypatch.setenv("ALIT_EVAL_FIGURE_FORMATS", "none,png")
    with pytest.raises(AlitEvalError, match="use none or a comma-separated list"):
        plots.drawing()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "a.png", "b.png", "b.svg", "e.png"]  # no temp files


def test_a_bad_figure_format_stops_a_drawing_command_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIT_EVAL_FIGURE_FORMATS", "gif")
    res = CliRunner().invoke(app, ["--device", "cpu", "--results-dir", str(tmp_path), "fid", "--ckpt", "demo",
                                   "--limit", "2", "--no-fid"])
    assert res.exit_code != 0 and "ALIT_EVAL_FIGURE_FORMATS='gif'" in str(res.exception) + res.output
    assert not (tmp_path / "fid").exists()
