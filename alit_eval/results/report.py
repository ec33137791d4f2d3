"""`alit-eval report`: gather run folders into one report (what is in it; `report_runs` finds and reads
the folders, `report_html` draws it and holds `build_report`, so this module never imports the renderer).

A report holds, per run: provenance (config.json, meta.json), a headline table per dataset
(rFID, L1, PSNR, SSIM, LPIPS per budget), the selected tokens per threshold when the run allocated
tokens, its other CSV tables, every figure, and warnings (incomplete run, skipped images, censored
allocations, approximate precision, LPIPS skipped, small-sample FID, budgets a codec cannot reach).

Several runs are compared only where their numbers are comparable: each (run, dataset) is a
*series* with its conditions (dataset, dataset size, preprocess mode, FID reference, FID resize).
Series with the same dataset, size and preprocess mode share a comparison table and overlaid
curves; rFID joins them only when the FID reference and resize match too. Everything that differs
is listed, so nothing is put side by side silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from alit_eval.errors import AlitEvalError
from alit_eval.metrics import specs
from alit_eval.results.report_runs import Run, expand, load_run, unique_labels
from alit_eval.results.schema import parse_condition

HEADLINE = specs.HEADLINE
LABELS = {m: specs.label(m) for m in specs.TABLE}
BASE_CONDITIONS = ("dataset", "dataset_size", "preprocess")
FID_CONDITIONS = ("fid_reference", "fid_resize")
CONDITIONS = BASE_CONDITIONS + FID_CONDITIONS
ALLOCATION = ("mean_tokens", "median_tokens", "censored_share", "l1", "lpips", "ssim", "psnr", "rfid",
              "fixed_budget_equivalent", "token_saving_pct")
FID_MIN_IMAGES = 2048  # below the feature dimension the covariance is singular and FID biased high
MAX_CSV_ROWS = 200
INLINE_MAX_ROWS = 40  # longer tables (per-image ones) are linked as CSV files instead of drawn inline


@dataclass
class Series:
    """A run's fixed-budget numbers on one dataset, with the conditions that decide comparability."""

    label: str
    run: Run
    dataset: str
    conditions: dict[str, str]
    rows: pd.DataFrame  # metrics rows: budget, metric, value, ci_low, ci_high, n
    checkpoint: str = "?"  # `alit_eval.results.labels.checkpoint_label` of the series' checkpoint

    @property
    def named(self) -> str:
        """The series as tables and legends name it: run label and checkpoint."""
        return f"{self.label} ({self.checkpoint})"


@dataclass
class Group:
    """Series whose base conditions match; `fid_comparable` says whether their rFIDs may share a table."""

    conditions: dict[str, str]
    series: list[Series]
    fid_comparable: bool
    table: pd.DataFrame | None = None


@dataclass
class Report:
    runs: list[Run]
    series: list[Series]
    groups: list[Group]
    differing: list[str]  # condition names that differ between series
    warnings: list[tuple[str, str]]  # (run label, message)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (run label, note) about the comparison


# ---- per-run content
def sweep_config(config: dict[str, Any], dataset: str | None = None) -> dict[str, Any]:
    """The config of the sweep behind a run (followed through ``from_run`` reuse and familiarity)."""
    if dataset is not None and isinstance(config.get("datasets"), dict) and dataset in config["datasets"]:
        config = config["datasets"][dataset]
    while isinstance(config.get("sweep"), dict):
        config = config["sweep"]
    return config


def _is_fixed(cond: str) -> bool:
    c = parse_condition(cond)
    return set(c) <= {"reference", "resize", "method"} and c.get("method", "tokenizer") == "tokenizer"


def fixed_rows(metrics: pd.DataFrame | None) -> pd.DataFrame:
    """The fixed-budget reconstruction rows (same tokens for every image) of a metrics table."""
    if metrics is None or metrics.empty:
        return pd.DataFrame(columns=["dataset", "budget", "metric", "value", "ci_low", "ci_high", "n", "condition"])
    m = metrics[metrics["metric"].isin(HEADLINE + ("mse",)) & metrics["budget"].notna()]
    return m[m["condition"].map(_is_fixed).astype(bool)]


def headline_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Budgets as rows, headline metrics as columns (plus ``<metric>_ci`` and the image count)."""
    out = pd.DataFrame({"tokens": sorted(int(b) for b in rows["budget"].unique())})
    for m in HEADLINE:
        d = rows[rows["metric"] == m].drop_duplicates("budget").set_index("budget")
        if d.empty:
            continue
        out[LABELS[m]] = [d["value"].get(b) for b in out["tokens"]]
        if d["ci_low"].notna().any():
            out[f"{LABELS[m]} 95% CI"] = [_ci(d["ci_low"].get(b), d["ci_high"].get(b)) for b in out["tokens"]]
    n = rows[rows["metric"] != "rfid"].groupby("budget")["n"].max()
    out["images"] = [n.get(b) for b in out["tokens"]]
    return out


def _ci(lo: Any, hi: Any) -> str:
    return "" if pd.isna(lo) or pd.isna(hi) else f"[{lo:.4g}, {hi:.4g}]"


def allocation_table(metrics: pd.DataFrame | None) -> pd.DataFrame | None:
    """One row per (dataset, criterion, threshold): selected tokens, censoring, adaptive quality."""
    if metrics is None or metrics.empty:
        return None
    cond = metrics["condition"].map(parse_condition)
    mask = cond.map(lambda c: "threshold" in c).astype(bool) & metrics["budget"].isna() & metrics["metric"].isin(ALLOCATION)
    if not mask.any():
        return None
    rows: dict[tuple, dict[str, Any]] = {}
    for (_, r), c in zip(metrics[mask].iterrows(), cond[mask]):
        if r["metric"] == "rfid" and c.get("selection") not in ("variable", "shuffled"):
            continue
        # compare runs carry one tokenizer per condition: every row names its tokenizer
        key = (r["dataset"], c.get("tokenizer", ""), c.get("criterion", ""), c["threshold"])
        row = rows.setdefault(key, {"dataset": key[0], "tokenizer": key[1], "criterion": key[2],
                                    "threshold": key[3]})
        name = f"{c['selection']} rFID" if r["metric"] == "rfid" else r["metric"]
        row[name] = r["value"]
        if r["metric"] == "mean_tokens" and pd.notna(r["ci_low"]):
            row["mean_tokens 95% CI"] = _ci(r["ci_low"], r["ci_high"])
    df = pd.DataFrame(list(rows.values()))
    if df["dataset"].nunique() == 1:
        df = df.drop(columns="dataset")
    if not df["tokenizer"].astype(bool).any():
        df = df.drop(columns="tokenizer")
    return df


def compare_tables(run: Run) -> list[tuple[str, pd.DataFrame]]:
    """The section of an `alit-eval compare` run: its tokenizers, quality per budget side by side
    (absent budgets marked), tokens needed at matched thresholds and the paired tests; [] otherwise."""
    if run.command != "compare":
        return []
    out = []
    tok = run.extra.get("tokenizers") or {}
    if tok:
        out.append(("Tokenizers compared", pd.DataFrame([{
            "tokenizer": n, "family": t.get("family"), "model": t.get("describe"),
            "sha256": str((t.get("checkpoint") or {}).get("sha256", ""))[:12],
            "budgets": ", ".join(map(str, t.get("budgets", []))),
            "absent": ", ".join(map(str, t.get("lacking", []))),
            "bits/token": t.get("bits_per_token") if t.get("bits_per_token") is not None else "no finite rate",
            "image size": t.get("image_size"),
            "budget signal": (t.get("budget_signal") or {}).get("verdict", "?"),
        } for n, t in tok.items()])))
    table = run.tables.get("compare.csv")
    if table is not None and len(table):
        t = table[table["metric"].isin(HEADLINE)].copy()
        t["cell"] = [v if s == "measured" else s for v, s in zip(t["value"], t["status"])]
        t["column"] = [f"{LABELS.get(m, m)} · {n}" for m, n in zip(t["metric"], t["tokenizer"])]
        order = list(dict.fromkeys(t.sort_values(["metric"], key=lambda c: c.map(HEADLINE.index), kind="stable")
                                   ["column"]))
        wide = t.pivot_table(index="budget", columns="column", values="cell", aggfunc="first")
        wide = wide.reindex(columns=order)
        # the tokens each decoder receives at each budget (fewer than the budget when a family drops slots)
        used = table.drop_duplicates(["tokenizer", "budget"]).pivot_table(index="budget", columns="tokenizer",
                                                                             values="tokens", aggfunc="first")
        for name in used.columns:
            wide[f"tokens received · {name}"] = used[name]
        out.append(("Quality per token budget (same images; tokens received = what the decoder gets)",
                    wide.reset_index()))
    matched = run.tables.get("matched_tokens.csv")
    if matched is not None and len(matched):
        out.append(("Tokens needed per image at matched thresholds", pd.DataFrame({
            "tokenizer": matched["tokenizer"], "threshold": matched["threshold"],
            "mean tokens": matched["mean_tokens"], "95% CI": [_ci(a, b) for a, b in zip(matched["ci_low"],
                                                                                      matched["ci_high"])],
            "median": matched["median_tokens"],
            "censored": [f"{c}/{n}" for c, n in zip(matched["n_censored"], matched["n"])],
            **{label: matched[col] for col, label in (("variable_rfid", "variable rFID"),
                                                      ("shuffled_rfid", "shuffled rFID"),
                                                      ("budget_signal", "budget signal")) if col in matched}})))
    tests = run.tables.get("paired_tests.csv")
    if tests is not None and len(tests):
        out.append((f"Paired tests against {run.extra.get('reference', 'the first tokenizer')} (same images; "
                    "Wilcoxon signed-rank)", tests[["tokenizer", "quantity", "threshold", "budget", "n_pairs",
                                                    "mean_reference", "mean", "diff", "ci_low", "ci_high",
                                                    "p_value"]]))
    return out


def run_conditions(run: Run, dataset: str, rows: pd.DataFrame) -> dict[str, str]:
    """The comparability conditions of one series (see the module docstring)."""
    cfg = sweep_config(run.config, dataset)
    data = cfg.get("data", {}) if isinstance(cfg.get("data"), dict) else {}
    source = str(data.get("source", dataset))
    if data.get("subset_seed") is not None:
        source += f" (random subset, seed {data['subset_seed']})"
    sizes = rows.loc[rows["metric"] != "rfid", "n"].dropna()
    fid = rows[rows["metric"] == "rfid"]
    fid_cond = parse_condition(fid["condition"].iloc[0]) if len(fid) else {}
    ref = cfg.get("fid_reference") or run.config.get("fid_reference") or fid_cond.get("reference")
    return {
        "dataset": source,
        "dataset_size": str(int(sizes.max())) if len(sizes) else "?",
        "preprocess": str(rows["preprocess"].iloc[0]) if "preprocess" in rows and len(rows) else "?",
        "fid_reference": str(ref) if len(fid) else "no rFID",
        "fid_resize": str(fid_cond.get("resize", cfg.get("fid_resize", "?"))) if len(fid) else "no rFID",
    }


def run_warnings(run: Run) -> list[str]:
    """Reader-facing warnings about one run."""
    out: list[str] = []
    if not run.is_run:
        return ["not an alit-eval run folder: only its figures are shown"]
    if run.meta is None:
        out.append("incomplete run: no meta.json (interrupted or still running); numbers may be partial")
    ex = run.extra
    skipped = ex.get("skipped_images") or []
    if skipped:
        first = skipped[0]
        out.append(f"{len(skipped)} image(s) could not be decoded and were skipped "
                   f"(first: {first.get('id')}: {first.get('error')})")
    if ex.get("approximate_precision") or ex.get("precision") not in (None, "fp32"):
        out.append(f"approximate precision ({ex.get('precision')}): numbers are not the fp32 reference values")
    signal = ex.get("budget_signal") or {}
    if signal.get("verdict") == "flat":
        out.append(f"NO BUDGET SIGNAL: {signal.get('message')}")
    for name, t in (ex.get("tokenizers") or {}).items():  # compare runs: one check per tokenizer
        sig = (t.get("budget_signal") or {}) if isinstance(t, dict) else {}
        if sig.get("verdict") == "flat":
            out.append(f"NO BUDGET SIGNAL for {name}: {sig.get('message')}")
    lp = ex.get("lpips")
    shows_lpips = run.metrics is not None and run.metrics["command"].isin(["fid", "rate-distortion"]).any()
    if isinstance(lp, str) and lp != "computed" and shows_lpips:
        out.append(lp if lp.lower().startswith("lpips") else f"LPIPS skipped: {lp}")
    m = run.metrics
    if m is not None and not m.empty:
        cens = m[(m["metric"] == "censored_share") & (m["value"] > 0)]
        # compare runs: one line per tokenizer (its condition), counted at its largest budget
        who = cens["condition"].map(lambda c: parse_condition(c).get("tokenizer", ""))
        for (ds, tok), group in cens.groupby([cens["dataset"], who], sort=False):
            conds = group["condition"].map(parse_condition)
            parts = ", ".join(f"{c.get('threshold')} ({100 * v:.0f}%)" for c, v in zip(conds, group["value"]))
            crit = conds.iloc[0].get("criterion", "l1")
            out.append(f"{ds}{f' · {tok}' if tok else ''}: censored allocation: some images never reach the {crit} "
                       f"threshold (share of images per threshold: {parts}); they count as "
                       f"{'the largest budget' if tok else 'the fallback budget'}")
        small = m[(m["metric"] == "rfid") & m["n"].notna() & (m["n"] < FID_MIN_IMAGES)]
        if len(small):
            out.append(f"rFID from {int(small['n'].min())} image(s) (< {FID_MIN_IMAGES}): biased upward, only "
                       "comparable with FIDs on the same number of images")
        reach = m[(m["metric"] == "reachable_share") & (m["value"] < 1)]
        for (codec, group) in reach.groupby(reach["condition"].map(lambda c: parse_condition(c).get("method", "?"))):
            worst = ", ".join(f"{int(b)} tokens: {100 * v:.0f}%" for b, v in zip(group["budget"], group["value"]))
            out.append(f"{codec} cannot fit every image into the tokenizer's bits (share that fits: {worst}); its "
                       "averages at those budgets cover only the images that fit")
    return out


def provenance(run: Run) -> list[tuple[str, str]]:
    """Key facts of a run as (label, text) pairs, most useful first."""
    if not run.is_run:
        return [("folder", str(run.path))]
    meta, ex, cfg = run.meta or {}, run.extra, sweep_config(run.config)
    ck = ex.get("checkpoint") or cfg.get("checkpoint") or run.config.get("checkpoint") or {}
    data = cfg.get("data", {}) if isinstance(cfg.get("data"), dict) else {}
    git = meta.get("git") or {}
    pkgs = meta.get("packages") or {}
    items = [
        ("folder", str(run.path)), ("command", run.command), ("run id", run.run_id),
        ("complete", "yes" if run.meta is not None else "no (no meta.json)"),
        ("checkpoint", f"{ck.get('name', '?')} (sha256 {str(ck.get('sha256', '?'))[:12]})" if ck else ""),
        ("dataset", f"{data.get('source', '')} ({data.get('kind', '')})" if data else
         ", ".join(run.config.get("datasets", {}) or [])),
        ("images", str(ex.get("n_images", data.get("n", "")))),
        ("preprocess", str(ex.get("preprocess", data.get("preprocess", "")))),
        ("budgets", ", ".join(map(str, cfg.get("budgets", run.config.get("budgets", []))))),
        ("halting", str(ex.get("halting", cfg.get("halting", "")))),
        ("seed", str(meta.get("seed", cfg.get("seed", "")))),
        ("FID", f"reference {ex.get('fid_reference') or cfg.get('fid_reference', 'originals')}, "
                f"resize {cfg.get('fid_resize', '?')}" if cfg.get("fid") and data else
                ("not computed" if data else "")),
        ("LPIPS", str(ex.get("lpips", ""))),
        ("precision", str(ex.get("precision", cfg.get("precision", "fp32")))),
        ("device", str(meta.get("device", "")) + (f" ({meta['cuda']['device_name']})" if meta.get("cuda") else "")),
        ("reused sweep", str(run.config.get("from_run") or ex.get("from_run") or "")),
        ("started", str(meta.get("started_at", ""))), ("wall time", f"{meta.get('wall_time_s')} s"
                                                        if meta.get("wall_time_s") is not None else ""),
        ("alit-eval", f"{meta.get('alit_eval_version', '')}" + (f", git {str(git.get('commit', ''))[:10]}"
                                                                 + (" (dirty)" if git.get("dirty") else "")
                                                                 if git else "")),
        ("torch", str(pkgs.get("torch", "") or "")),
        ("command line", " ".join(meta.get("command_line", [])[1:]) if meta.get("command_line") else ""),
    ]
    return [(k, v) for k, v in items if v not in ("", "None", "None s")]


# ---- comparison
def _sweep_key(run: Run, dataset: str) -> str:
    """The folder a series' numbers come from: the reused sweep (``from_run``, also per dataset of a
    familiarity run), a familiarity run's own ``sweeps/<dataset>``, else the run folder."""
    cfg = run.config
    per_dataset = isinstance(cfg.get("datasets"), dict)
    if per_dataset and isinstance(cfg["datasets"].get(dataset), dict):
        cfg = cfg["datasets"][dataset]
    if isinstance(cfg.get("from_run"), str):
        return str(Path(cfg["from_run"]).resolve())
    return str((run.path / "sweeps" / dataset if per_dataset else run.path).resolve())


def build_series(runs: list[Run]) -> tuple[list[Series], list[tuple[str, str]]]:
    """Series of all runs, leaving out a series whose sweep is one already listed (the same numbers);
    returns the series and (label, note) pairs for those left out."""
    out, notes = [], []
    owner: dict[str, str] = {}
    for run in runs:
        rows = fixed_rows(run.metrics)
        datasets = list(dict.fromkeys(rows["dataset"])) if len(rows) else []
        for ds in datasets:
            sub = rows[rows["dataset"] == ds]
            label = run.label if len(datasets) == 1 else f"{run.label} · {ds}"
            key = _sweep_key(run, ds)
            if key in owner:
                notes.append((label, f"has the same sweep as {owner[key]} (a reused sweep): its fixed-budget "
                                     "numbers are the same, so it is not compared separately"))
                continue
            owner[key] = label
            out.append(Series(label, run, ds, run_conditions(run, ds, sub), sub, series_checkpoint(run, ds)))
    return out, notes


def series_checkpoint(run: Run, dataset: str | None = None) -> str:
    """The checkpoint behind a run's series, as a reader knows it (meta.json first: it holds the path)."""
    from alit_eval.results.labels import checkpoint_of

    ck = run.extra.get("checkpoint") or sweep_config(run.config, dataset).get("checkpoint") \
        or run.config.get("checkpoint")
    return checkpoint_of(ck if isinstance(ck, dict) else {"name": ck} if ck else None)


def group_series(series: list[Series]) -> list[Group]:
    """Partition series by their base conditions; mark whether rFID may be compared in each group."""
    groups: dict[tuple, Group] = {}
    for s in series:
        key = tuple(s.conditions[k] for k in BASE_CONDITIONS)
        g = groups.setdefault(key, Group({k: s.conditions[k] for k in BASE_CONDITIONS}, [], True))
        g.series.append(s)
    for g in groups.values():
        fid = {tuple(s.conditions[k] for k in FID_CONDITIONS) for s in g.series
               if s.conditions["fid_reference"] != "no rFID"}
        g.fid_comparable = len(fid) <= 1
        if len(g.series) > 1:
            g.table = comparison_table(g)
    return list(groups.values())


def comparison_table(group: Group) -> pd.DataFrame:
    """Budgets as rows; per metric one column per series (and a difference column for two)."""
    budgets = sorted({int(b) for s in group.series for b in s.rows["budget"]})
    out = pd.DataFrame({"tokens": budgets})
    metrics = [m for m in HEADLINE if (m != "rfid" or _fid_shared(group))
               and sum(m in set(s.rows["metric"]) for s in group.series) >= 2]
    for m in metrics:
        cols = []
        for s in group.series:
            d = s.rows[s.rows["metric"] == m].drop_duplicates("budget").set_index("budget")["value"]
            col = f"{LABELS[m]} · {s.named}"
            out[col] = [d.get(b) for b in budgets]
            cols.append(col)
        if len(group.series) == 2:
            out[f"{LABELS[m]} Δ (2nd − 1st)"] = out[cols[1]] - out[cols[0]]
    return out


def _fid_shared(group: Group) -> bool:
    """rFID goes into a group's table and figure when at least two series have it, comparably."""
    return group.fid_comparable and len(_with_fid(group.series)) >= 2


def comparison_long(group: Group) -> pd.DataFrame:
    """The rows of a group's overlaid figure (column ``series`` is the curve)."""
    parts = []
    for s in group.series:
        d = s.rows if _fid_shared(group) else s.rows[s.rows["metric"] != "rfid"]
        parts.append(d.assign(series=s.named))
    return pd.concat(parts, ignore_index=True)


def _with_fid(series: list[Series]) -> list[Series]:
    return [s for s in series if s.conditions["fid_reference"] != "no rFID"]


def differing(series: list[Series]) -> list[str]:
    """Conditions that differ between series (FID conditions only among series that have an rFID)."""
    return [k for k in CONDITIONS
            if len({s.conditions[k] for s in (_with_fid(series) if k in FID_CONDITIONS else series)}) > 1]


def odd_cells(series: list[Series]) -> set[tuple[int, str]]:
    """(series position, condition) whose value differs from the first series' (FID conditions: the
    first series with an rFID), for highlighting."""
    out = set()
    for k in CONDITIONS:
        pool = _with_fid(series) if k in FID_CONDITIONS else series
        if not pool:
            continue
        first = pool[0].conditions[k]
        out |= {(i, k) for i, s in enumerate(series) if s in pool and s.conditions[k] != first}
    return out


def collect(paths: Iterable[str | Path]) -> Report:
    """Load the runs behind `paths` and work out tables, comparisons and warnings."""
    runs = [load_run(p) for p in expand(paths)]
    if not runs:
        raise AlitEvalError("no run folder given; pass one or more results/<command>/<run_id> folders")
    unique_labels(runs)
    series, notes = build_series(runs)
    groups = group_series(series)
    warnings = [(r.label, w) for r in runs for w in run_warnings(r)]
    return Report(runs, series, groups, differing(series), warnings, notes)
