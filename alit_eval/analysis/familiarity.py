"""`alit-eval familiarity`: do unfamiliar (out-of-distribution) images need more tokens?

Two or more datasets are swept with the same tokenizer at every budget (each sweep in its own
resumable sub-folder ``sweeps/<name>/``, or reused from an earlier run with ``--from-run``). Per
dataset: quality-vs-tokens curves with 95% CIs and rFID per budget; required tokens per image at
each threshold. Against the reference dataset (the first): the mean difference of required tokens
and of L1 per budget, with bootstrap CIs and a two-sided Mann–Whitney U test.

Thresholds given as ``auto``/``qP`` are resolved on the reference dataset, so every dataset is held
to the same numeric threshold. Censored images (never reaching the threshold) count as needing the
largest budget; each dataset's censored share is reported next to it. With ``demo-probes`` among
the datasets, mean L1 against tokens is also reported per probe kind (KARL Fig. 5 style).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from alit_eval.analysis import token_selection as al
from alit_eval.analysis.correlation import compare_groups
from alit_eval.analysis.labelled import split_labelled
from alit_eval.analysis.quality import summarize
from alit_eval.analysis.selection_summary import summarize_selection
from alit_eval.analysis.signal import as_dict as signal_dict, warn_if_flat
from alit_eval.analysis.skeleton import CommandRun, dataset_meta
from alit_eval.analysis.stats import bootstrap_mean_ci
from alit_eval.engine.plan import has_features, plan_sweep, plan_sweeps
from alit_eval.errors import AlitEvalError
from alit_eval.results import plots, plots_allocation as pa
from alit_eval.results.atomic import write_csv, write_json, write_parquet
from alit_eval.results.labels import checkpoint_of
from alit_eval.results.schema import format_condition, metrics_frame


DEFAULT_DATASETS = ("demo-scenes", "demo-unfamiliar", "demo-natural")
PROBES = "demo-probes"


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the comparison: a name and either a data source or an earlier sweep folder."""

    name: str
    data: str | None = None
    from_run: str | None = None


def parse_datasets(data: Sequence[str], from_runs: Sequence[str] = ()) -> list[DatasetSpec]:
    """``--data [name=]SRC`` and ``--from-run [name=]RUN_DIR`` values, in that order, as `DatasetSpec`s.

    Default names: the demo split name, else the folder's last component; for a reused run, the
    dataset recorded in its config. A ``--from-run`` folder of an earlier ``familiarity`` run (it
    holds ``sweeps/``) contributes all of its datasets.

    Raises:
        AlitEvalError: fewer than two datasets, or two with the same name.
    """
    specs: list[DatasetSpec] = []
    for text in data:
        name, src = split_labelled(text)
        specs.append(DatasetSpec(name or (src if src.startswith("demo-") else Path(src).name), data=src))
    for text in from_runs:
        name, folder = split_labelled(text)
        path = Path(folder).expanduser()
        if name is None and (path / "sweeps").is_dir():
            specs += _familiarity_run(path)
            continue
        if name is None:
            try:
                src = str(json.loads((path / "config.json").read_text(encoding="utf-8"))["data"]["source"])
                name = src if src.startswith("demo-") else Path(src).name
            except (OSError, ValueError, KeyError, TypeError):
                name = path.name
        specs.append(DatasetSpec(name, from_run=str(path)))
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise AlitEvalError(f"two datasets are named {dup[0]!r}; name them with --data NAME=SRC")
    if len(specs) < 2:
        raise AlitEvalError("familiarity compares at least two datasets; pass --data (or --from-run) twice or more")
    for s in specs:
        if any(ch in s.name for ch in "/\\;=") or s.name in {".", ".."}:
            raise AlitEvalError(f"dataset name {s.name!r} must be a plain word (no / \\ ; =)")
    return specs


def _familiarity_run(path: Path) -> list[DatasetSpec]:
    """The datasets of an earlier familiarity run, reference first, as it recorded them."""
    try:
        recorded = json.loads((path / "config.json").read_text(encoding="utf-8"))["datasets"]
    except (OSError, ValueError, KeyError, TypeError):
        raise AlitEvalError(f"--from-run {path}: holds sweeps/ but no readable familiarity config.json") from None
    specs = []
    for name, cfg in recorded.items():
        sub = path / "sweeps" / name
        where = str(sub) if (sub / "per_image.parquet").is_file() else cfg.get("from_run")
        if where is None:
            raise AlitEvalError(f"--from-run {path}: the sweep of {name!r} did not finish; rerun that command first")
        specs.append(DatasetSpec(name, from_run=str(where)))
    return specs


def group_curves(per_image: "pd.DataFrame", group: str, metric: str = "l1", seed: int = 0) -> "pd.DataFrame":
    """Mean `metric` per (group value, budget) with a bootstrap 95% CI (e.g. per probe kind)."""
    rows = []
    for (name, b), d in per_image.groupby([group, "budget"], sort=True):
        v = d[metric].to_numpy(np.float64)
        lo, hi = bootstrap_mean_ci(v, seed=seed)
        rows.append({group: name, "budget": int(b), "value": float(np.mean(v)), "ci_low": lo, "ci_high": hi,
                     "n": len(v)})
    return pd.DataFrame(rows)


def comparisons(selection: "pd.DataFrame", per_image: "pd.DataFrame", reference: str, max_budget: int, *,
                n_boot: int = 1000, seed: int = 0) -> "pd.DataFrame":
    """Each dataset against the reference: required tokens per threshold and L1 per budget.

    Returns:
        ``comparisons.csv``: dataset, quantity (``tokens``/``l1``), threshold, budget, mean_reference,
        mean, diff, ci_low, ci_high, mannwhitney_u, p_value, effect (P(other > ref) + ties/2), n_reference, n.
    """
    rows = []
    others = [d for d in dict.fromkeys(selection["dataset"]) if d != reference]
    for thr, g in selection.groupby("threshold", sort=True):
        ref = al.required_tokens(g[g["dataset"] == reference], max_budget)
        for name in others:
            c = compare_groups(ref, al.required_tokens(g[g["dataset"] == name], max_budget), n_boot=n_boot, seed=seed)
            rows.append(_row(name, "tokens", float(thr), None, c))
    for b, g in per_image.groupby("budget", sort=True):
        ref = g.loc[g["dataset"] == reference, "l1"].to_numpy(np.float64)
        for name in others:
            c = compare_groups(ref, g.loc[g["dataset"] == name, "l1"].to_numpy(np.float64), n_boot=n_boot, seed=seed)
            rows.append(_row(name, "l1", None, int(b), c))
    out = pd.DataFrame(rows)
    out["budget"] = out["budget"].astype("Int64")
    return out


def _row(name: str, quantity: str, thr: float | None, budget: int | None, c: Any) -> dict[str, Any]:
    return {"dataset": name, "quantity": quantity, "threshold": thr, "budget": budget, "mean_reference": c.mean_a,
            "mean": c.mean_b, "diff": c.diff.value, "ci_low": c.diff.ci_low, "ci_high": c.diff.ci_high,
            "mannwhitney_u": c.u, "p_value": c.p_value, "effect": c.effect, "n_reference": c.n_a, "n": c.n_b}


def comparison_rows(table: "pd.DataFrame", *, reference: str, criterion: str, preprocess: str) -> list[dict]:
    """metrics.csv rows of `comparisons`: the difference (with CI), U, its p-value and the effect size."""
    rows = []
    for r in table.to_dict("records"):
        cond = {"reference": reference}
        if r["quantity"] == "tokens":
            cond.update(threshold=f"{r['threshold']:.6g}", criterion=criterion)
        prefix = "token" if r["quantity"] == "tokens" else "l1"
        base = {"command": "familiarity", "dataset": r["dataset"], "preprocess": preprocess,
                "budget": None if pd.isna(r["budget"]) else int(r["budget"]), "n": int(r["n"] + r["n_reference"]),
                "condition": format_condition(**cond)}
        rows += [{**base, "metric": f"{prefix}_diff", "value": r["diff"], "ci_low": r["ci_low"],
                  "ci_high": r["ci_high"]},
                 {**base, "metric": f"{prefix}_mannwhitney_u", "value": r["mannwhitney_u"]},
                 {**base, "metric": f"{prefix}_mannwhitney_p", "value": r["p_value"]},
                 {**base, "metric": f"{prefix}_effect", "value": r["effect"]}]
    return rows


def _same_tokenizer(plans: dict[str, Any]) -> None:
    """Refuse to compare sweeps made by different checkpoints (a mixed --data/--from-run call)."""
    def key(cfg: dict) -> tuple:
        ck = cfg.get("sweep", cfg).get("checkpoint", {})
        return (ck.get("sha256") or ck.get("name"),)

    seen = {name: key(p.config) for name, p in plans.items()}
    if len(set(seen.values())) > 1:
        detail = ", ".join(f"{n}: {str(k[0])[:12]}" for n, k in seen.items())
        raise AlitEvalError(f"the datasets were swept with different checkpoints ({detail}); familiarity compares "
                            "datasets under one tokenizer")


def write_figures(run_dir: Any, metrics: "pd.DataFrame", selection: "pd.DataFrame", max_budget: int,
                  probe_curves: "pd.DataFrame | None", *, title: str = "") -> None:
    """Curves per dataset, required-token violins, and the per-probe curves when there are probes."""
    if not plots.drawing():
        return
    per_budget = metrics["budget"].notna() & (metrics["condition"].eq("") | metrics["metric"].eq("rfid"))
    plots.save(plots.metrics_vs_tokens(metrics[per_budget], hue="dataset", title=title), run_dir.figures,
               "metrics_vs_tokens")
    # Censored images are counted in the axis labels, not drawn at the largest budget.
    plots.save(pa.required_tokens_by_group(selection, "dataset", title=title), run_dir.figures, "required_tokens")
    if probe_curves is not None:
        plots.save(pa.curves_by_group(probe_curves, "kind", title=title), run_dir.figures, "probe_curves")


def run(req: Any, *, datasets: Sequence[DatasetSpec], thresholds: Sequence[str], criterion: str = "l1",
        fallback: str = "min-error", n_boot: int = 1000, seed: int = 0, device: str = "cpu", offline: bool = False,
        results_dir: Any = "results", run_id: str | None = None, overwrite: bool = False,
        progress: bool = True, figures: bool = True) -> tuple[Any, "pd.DataFrame", "pd.DataFrame"]:
    """`alit-eval familiarity` end to end; returns ``(run_dir, metrics, comparisons)``.

    ``figures=False`` writes every table but draws no figure (scripted use).
    """
    al.criterion_spec(criterion)
    fresh = [s for s in datasets if s.data is not None]
    plans = dict(zip([s.name for s in fresh], plan_sweeps(req, [s.data for s in fresh], seed=seed, device=device,
                                                           offline=offline, progress=progress)))
    for s in datasets:
        if s.from_run is not None:
            plans[s.name] = plan_sweep(req, s.from_run, seed=seed, device=device, offline=offline)
    _same_tokenizer(plans)
    reference = datasets[0].name
    config = {"datasets": {s.name: plans[s.name].config for s in datasets}, "reference": reference,
              "familiarity": {"thresholds": [str(t) for t in thresholds], "criterion": criterion,
                              "fallback": fallback, "n_boot": n_boot, "fid": bool(req.fid)}}
    with CommandRun("familiarity", config, results_dir=results_dir, run_id=run_id, overwrite=overwrite) as run:
        inputs = {s.name: _sweep(plans[s.name], run.dir.path / "sweeps" / s.name) for s in datasets}
        ref_table = inputs[reference].result.per_image
        resolved = al.resolve_thresholds(thresholds, ref_table, criterion)
        signal = warn_if_flat(ref_table, criterion)  # checked on the reference set, where thresholds are set
        max_budget = max(max(i.result.budgets) for i in inputs.values())
        rows, selection, per_image, notes = _dataset_rows(inputs, resolved, criterion=criterion, fallback=fallback,
                                                          seed=seed, fid=bool(req.fid))
        comp = comparisons(selection, per_image, reference, max_budget, n_boot=n_boot, seed=seed)
        rows += comparison_rows(comp, reference=reference, criterion=criterion,
                                preprocess=inputs[reference].preprocess)
        metrics = metrics_frame(rows)
        run.dir.write_metrics(metrics)
        run.dir.write_per_image(per_image)
        write_parquet(selection, run.dir.file("selection.parquet"))
        write_csv(comp.assign(**signal.columns()), run.dir.file("comparisons.csv"))
        probe_names = [n for n, i in inputs.items() if i.config.get("data", {}).get("source") == PROBES]
        curves = None
        if probe_names:
            probes = per_image[per_image["dataset"].isin(probe_names)].rename(columns={"label": "kind"})
            curves = group_curves(probes, "kind", seed=seed)
            write_csv(curves, run.dir.file("probe_curves.csv"))
        if figures:
            sets = ", ".join(f"{n} (n={int(i.result.per_image['image_id'].nunique())})" for n, i in inputs.items())
            title = f"familiarity: {checkpoint_of(inputs[reference].checkpoint)} on {sets}"
            write_figures(run.dir, metrics, selection, max_budget, curves, title=title)
        run.finish(seed, {
            "checkpoint": inputs[reference].checkpoint, "reference": reference,
            "datasets": {n: dataset_meta(i) for n, i in inputs.items()},
            "thresholds": [{"spec": s, "value": v, "resolved_on": reference} for s, v in resolved],
            "criterion": criterion, "fallback": fallback, "n_boot": n_boot, "budget_signal": signal_dict(signal),
            "censoring": "censored images count as the largest budget in required-token statistics",
            "notes": notes,
        }, device=next(iter(inputs.values())).result.info.get("device"))
    return run.dir, metrics, comp


def _sweep(plan: Any, folder: Path) -> Any:
    """Run (or reuse) one dataset's sweep in its sub-folder, and make that a reusable sweep folder."""
    inputs = plan.execute(folder)
    if inputs.from_run is None:
        write_json(plan.config, folder / "config.json")
        write_parquet(inputs.result.per_image, folder / "per_image.parquet")
    return inputs


def _dataset_rows(inputs: dict[str, Any], resolved: list, *, criterion: str, fallback: str, seed: int,
                  fid: bool) -> tuple[list[dict], pd.DataFrame, pd.DataFrame, list[str]]:
    """Per dataset: fixed-budget rows and token rows; the joint selection and per-image tables; notes."""
    rows, selections, tables, notes = [], [], [], []
    for name, inp in inputs.items():
        res = inp.result
        has_fid = fid and has_features(res.store, res.budgets)
        if fid and not has_fid:
            notes.append(f"{name}: no Inception features in the sweep, FID skipped")
        rows += summarize(res, command="familiarity", dataset=name, preprocess=inp.preprocess, seed=seed,
                          fid=has_fid).to_dict("records")
        sel = al.selection_table(res.per_image, resolved, criterion=criterion, fallback=fallback)
        sel.insert(0, "dataset", name)
        sel_rows, _, _ = summarize_selection(sel, res.per_image, command="familiarity", dataset=name,
                                             preprocess=inp.preprocess, seed=seed, tokens="required_tokens")
        rows += [r for r in sel_rows if r["metric"] in ("mean_tokens", "median_tokens", "censored_share")]
        selections.append(sel)
        tables.append(res.per_image.assign(dataset=name, source_id=res.per_image["image_id"],
                                           image_id=[f"{name}/{i}" for i in res.per_image["image_id"]]))
    return rows, pd.concat(selections, ignore_index=True), pd.concat(tables, ignore_index=True), notes
