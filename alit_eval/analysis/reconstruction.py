"""Reconstruction quality per budget: the headline table of `alit-eval fid`.

Turns the engine's per-image table and feature statistics into long-format metric rows: mean
L1/MSE/PSNR/SSIM/LPIPS per budget with a 95% bootstrap CI, and rFID per budget against the
preprocessed originals of the same images (ALIT/TiTok/One-D-Piece convention) or a reference
statistics file. PSNR of a pixel-identical reconstruction is infinite; means clip it at
`PSNR_CAP_DB` so one perfect image cannot make the mean infinite (stated in results/README.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from alit_eval.analysis.compute import compute_table
from alit_eval.analysis.skeleton import CommandRun
from alit_eval.analysis.stats import bootstrap_mean_ci
from alit_eval.engine import distributed
from alit_eval.engine.reuse import SweepPlan
from alit_eval.engine.runner import prepare
from alit_eval.engine.sweep import accumulate, run_sweep
from alit_eval.metrics.fid import FidStats, FrechetReference, kernel_inception_distance, load_stats_npz
from alit_eval.results import plots
from alit_eval.results.io import write_csv
from alit_eval.results.schema import format_condition, metrics_frame

PSNR_CAP_DB = 100.0
PER_IMAGE = ("l1", "mse", "psnr", "ssim", "lpips")


def summarize(result: Any, *, command: str, dataset: str, preprocess: str, seed: int = 0,
              fid_ref: FidStats | None = None, kid: bool = False, fid: bool = True) -> "Any":
    """Metric rows (see `alit_eval.results.schema.METRICS_COLUMNS`) for one sweep."""
    df = result.per_image
    rows: list[dict[str, Any]] = []
    base = {"command": command, "dataset": dataset, "preprocess": preprocess}
    for b in result.budgets:
        sub = df[df["budget"] == b]
        for m in PER_IMAGE:
            if m not in sub or sub[m].isna().all():
                continue
            v = sub[m].to_numpy(dtype=np.float64)
            if m == "psnr":
                v = np.minimum(v, PSNR_CAP_DB)
            lo, hi = bootstrap_mean_ci(v, seed=seed)
            rows.append({**base, "budget": b, "metric": m, "value": float(np.mean(v)), "n": int(v.size),
                         "ci_low": lo, "ci_high": hi, "condition": ""})
    if fid:
        keys = ["feat_ref"] + [f"feat_{b}" for b in result.budgets]
        stats = accumulate(result.store, keys)
        if fid_ref is None:
            mu_r, sig_r, ref_kind = stats["feat_ref"].mean(), stats["feat_ref"].cov(), "originals"
        else:
            mu_r, sig_r, ref_kind = fid_ref.mu, fid_ref.sigma, "npz"
        resize = result.info.get("inception", {}).get("resize", "tf1")
        cond = format_condition(reference=ref_kind, resize=resize)
        reference = FrechetReference(mu_r, sig_r)  # one eigendecomposition for all budgets
        for b in result.budgets:
            s = stats[f"feat_{b}"]
            rows.append({**base, "budget": b, "metric": "rfid", "value": reference.distance(s.mean(), s.cov()),
                         "n": int(s.n), "ci_low": None, "ci_high": None, "condition": cond})
        if kid:
            ref = result.store.concat("feat_ref")
            for b in result.budgets:
                mean, std = kernel_inception_distance(result.store.concat(f"feat_{b}"), ref,
                                                      generator=np.random.default_rng(seed))
                rows.append({**base, "budget": b, "metric": "kid", "value": mean, "n": int(len(ref)),
                             "ci_low": mean - 1.96 * std, "ci_high": mean + 1.96 * std, "condition": cond})
    return metrics_frame(rows)


def write_examples(result: Any, folder: Any) -> "Any":
    """Save the stored example reconstructions as PNGs; return the index table for the figure."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for shard in result.store.iter():
        if "example_index" not in shard:
            continue
        ids = dict(zip(shard["index"].tolist(), shard["id"].tolist()))
        for k, idx in enumerate(shard["example_index"].tolist()):
            for col in ["ref", *result.budgets]:
                arr = shard[f"example_{col}"][k].transpose(1, 2, 0)
                name = "original" if col == "ref" else int(col)
                path = folder / f"{idx:05d}_{name}.png"
                Image.fromarray(arr).save(path)
                rows.append({"image_id": ids[idx], "column": name, "path": str(path)})
    return pd.DataFrame(rows, columns=["image_id", "column", "path"])


def run(req: Any, *, seed: int, device: str, offline: bool, results_dir: Any, run_id: str | None = None,
        overwrite: bool = False, kid: bool = False, fid_ref: str | None = None, out: Any = None,
        progress: bool = True, on_batch: Any = None, compute: bool = False) -> tuple[Any, Any]:
    """`alit-eval fid` end to end; returns ``(run_dir, metrics)`` (``(None, None)`` on torchrun workers)."""
    dist = distributed.init(device)
    p = prepare(req, seed=seed, device=distributed.device_for(device, dist), offline=offline, progress=progress)
    ref = load_stats_npz(fid_ref) if fid_ref else None
    p.config.update(kid=kid, fid_reference=("npz:" + Path(fid_ref).name) if fid_ref else "originals")
    if not dist.main:  # workers under torchrun: store their batches in rank 0's run folder, then stop
        path = distributed.broadcast_object(None, dist)
        run_sweep(p.tokenizer, p.source, p.sweep, path, dist=dist)
        return None, None
    with CommandRun("fid", p.config, SweepPlan.of(p), results_dir=results_dir, run_id=run_id,
                    overwrite=overwrite, out=out) as run:
        distributed.broadcast_object(run.dir.path, dist)
        inputs = run.sweep(on_batch=on_batch, dist=dist)
        result = inputs.result
        metrics = summarize(result, command="fid", dataset=inputs.dataset, preprocess=inputs.preprocess, seed=seed,
                            fid_ref=ref, kid=kid, fid=req.fid)
        run.dir.write_metrics(metrics)
        run.dir.write_per_image(result.per_image)
        write_figures(run.dir, result, metrics)
        if compute:
            # FLOPs per image and stage (no timing: the sweep's own wall time is in meta.json).
            table = compute_table(p.tokenizer, result.budgets, result.info["device"], latency=False,
                                  fid=req.fid, inception=None, seed=seed)
            write_csv(table, run.dir.path / "compute.csv")
        info = result.info
        run.finish(seed, {
            "fid_reference": p.config["fid_reference"], "precision": info["precision"],
            "approximate_precision": info["approximate"], "batch_size": info["batch_size"],
            "oom_chunk": info["oom_chunk"], "processes": dist.world,
        })
    return run.dir, metrics


def write_figures(run_dir: Any, result: Any, metrics: Any) -> None:
    """Metrics against tokens, and the strip of example reconstructions (PNGs under ``examples/``)."""
    plots.save(plots.metrics_vs_tokens(metrics), run_dir.figures, "metrics_vs_tokens")
    examples = write_examples(result, run_dir.path / "examples")
    if len(examples):
        write_csv(examples.assign(path=[str(Path(x).relative_to(run_dir.path)) for x in examples["path"]]),
                  run_dir.path / "examples" / "examples.csv")
        plots.save(plots.example_strip(examples), run_dir.figures, "examples")
