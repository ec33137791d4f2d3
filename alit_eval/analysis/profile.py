"""`alit-eval profile`: FLOPs, parameters and latency per token budget, as a run folder.

The counting and timing are the primitives of `alit_eval.analysis.flops`; this module loads the
checkpoint, writes ``compute.csv``, ``params.csv``, ``metrics.csv`` and ``figures/cost_structure``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from alit_eval.analysis.flops import compute_table, param_table
from alit_eval.analysis.skeleton import CommandRun
from alit_eval.engine.sweep import resolve_device
from alit_eval.metrics.inception import InceptionFeatures
from alit_eval.results import plots, plots_cost
from alit_eval.results.atomic import write_csv
from alit_eval.results.labels import checkpoint_label
from alit_eval.results.schema import format_condition, metrics_frame
from alit_eval.tokenizers.family_queries import budgets_for
from alit_eval.tokenizers.resolve import load_pretrained


def metrics_rows(table: "Any", params: "Any", *, dataset: str = "random-inputs") -> list[dict[str, Any]]:
    """Long-format metric rows (`alit_eval.results.schema`) of a compute table and a param table."""
    base = {"command": "profile", "dataset": dataset, "preprocess": "none", "n": 1}
    rows = []
    for r in table.itertuples(index=False):
        budget = None if pd.isna(r.budget) else int(r.budget)
        rows.append({**base, "budget": budget, "metric": "gflops", "value": float(r.gflops),
                     "condition": format_condition(stage=r.stage)})
        if not np.isnan(r.latency_ms):
            rows.append({**base, "budget": budget, "metric": "latency_ms", "value": float(r.latency_ms),
                         "n": int(r.repeats), "condition": format_condition(
                             stage=r.stage, device=r.device, precision=r.precision, batch_size=r.batch_size)})
    for r in params.itertuples(index=False):
        rows.append({**base, "metric": "params", "value": float(r.params),
                     "condition": format_condition(component=r.component)})
    return rows


def run(ckpt: str, budgets: Sequence[int] | None, *, device: str, seed: int, offline: bool, results_dir: Any,
        batch_size: int = 1, repeats: int = 5, warmup: int = 1, precision: str = "fp32", fid: bool = True,
        inception_weights: str | None = None, heads: int | None = None, trust_checkpoint: bool = False,
        run_id: str | None = None, overwrite: bool = False, family: str | None = None) -> tuple[Any, Any, Any]:
    """`alit-eval profile` end to end; returns ``(run_dir, compute table, param table)``.

    Writes ``compute.csv`` (the `compute_table`), ``params.csv`` (`param_table`), ``metrics.csv``
    (`metrics_rows`), ``figures/cost_structure`` and ``meta.json`` under
    ``<results_dir>/profile/<run_id>/``.
    """
    dev = resolve_device(device)
    tok, info = load_pretrained(ckpt, offline=offline, trust_checkpoint=trust_checkpoint, heads=heads,
                                device=str(dev), family=family)
    chosen = budgets_for(tok, budgets, info.get("default_budgets"))
    inception = None
    if fid:
        inception = InceptionFeatures(inception_weights, "tf1", dev, offline=offline)
    # Latency depends on the device, so the device is part of the config (and of the default run id).
    config = {"checkpoint": {"name": info["name"], "sha256": info["sha256"], "heads": heads}, "budgets": chosen,
              "batch_size": batch_size, "repeats": repeats, "warmup": warmup, "precision": precision,
              "fid": fid, "device": str(dev), "seed": seed, "halting": info["halting"]}
    with CommandRun("profile", config, results_dir=results_dir, run_id=run_id, overwrite=overwrite) as run:
        table = compute_table(tok, chosen, dev, batch_size=batch_size, repeats=repeats, warmup=warmup,
                              precision=precision, fid=fid, inception=inception, seed=seed)
        params = param_table(tok)
        write_csv(table, run.dir.file("compute.csv"))
        write_csv(params, run.dir.file("params.csv"))
        run.dir.write_metrics(metrics_frame(metrics_rows(table, params)))
        title = f"profile: {checkpoint_label(info['name'], info.get('path'))} on {dev} (batch {batch_size})"
        if plots.drawing():
            plots.save(plots_cost.cost_structure(table, title=title), run.dir.figures, "cost_structure")
        extra = {"checkpoint": info, "precision": precision, "approximate_precision": precision != "fp32",
                 "torch_threads": torch.get_num_threads(), "inputs": "random uniform images (cost is content-free)",
                 "halting": info["halting"],
                 "inception": {"path": str(inception.weights.path), "sha256": inception.weights.sha256}
                 if inception is not None else None}
        if dev.type == "cuda":
            extra["device_name"] = torch.cuda.get_device_name(dev)
        run.finish(seed, extra, device=str(dev))
    return run.dir, table, params
