"""`alit-eval fid`: reconstruction quality and rFID per budget, the headline table.

One sweep (`alit_eval.analysis.skeleton`), then `alit_eval.analysis.quality.summarize` for the
metric rows, the metrics-vs-tokens figure, example reconstructions, and (unless ``--no-compute``)
the FLOP table of `alit_eval.analysis.flops`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from alit_eval.analysis import noise_spread
from alit_eval.analysis.flops import cached_compute_table
from alit_eval.analysis.quality import summarize
from alit_eval.analysis.skeleton import CommandRun, figure_title
from alit_eval.engine import distributed
from alit_eval.engine.plan import SweepPlan
from alit_eval.engine.prepare import prepare
from alit_eval.engine.recons import check_folder, drop_unsaved, write_png
from alit_eval.engine.sweep import run_sweep
from alit_eval.errors import AlitEvalError
from alit_eval.metrics.feature_distance import load_stats_npz
from alit_eval.paths import portable
from alit_eval.results import plots
from alit_eval.results.atomic import write_csv
from alit_eval.tokenizers.family_options import uses_global_stream

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
                name = "original" if col == "ref" else int(col)
                path = folder / f"{idx:05d}_{name}.png"
                write_png(shard[f"example_{col}"][k], path, option="--results-dir")  # errors name the file
                rows.append({"image_id": ids[idx], "column": name, "path": str(path)})
    return pd.DataFrame(rows, columns=["image_id", "column", "path"])


def run(req: Any, *, seed: int, device: str, offline: bool, results_dir: Any, run_id: str | None = None,
        overwrite: bool = False, reuse_finished: bool = False, kid: bool = False, fid_ref: str | None = None, out: Any = None,
        progress: bool = True, on_batch: Any = None, compute: bool = False) -> tuple[Any, Any]:
    """`alit-eval fid` end to end; returns ``(run_dir, metrics)`` (``(None, None)`` on torchrun workers)."""
    if req.save_recons:  # a file, a read-only folder or one overlapping the data: refused before loading
        check_folder(req.save_recons, req.data)
    dist = distributed.init(device)
    p = prepare(req, seed=seed, device=distributed.device_for(device, dist), offline=offline, progress=progress)
    ref = load_stats_npz(fid_ref) if fid_ref else None
    p.config.update(kid=kid, fid_reference=("npz:" + Path(fid_ref).name) if fid_ref else "originals")
    seeds = noise_spread.seed_list(seed, getattr(req, "noise_seeds", 1))
    noise_spread.check_random(p.tokenizer, len(seeds))
    if len(seeds) > 1 and dist.world > 1:
        raise AlitEvalError("--noise-seeds runs in one process; drop torchrun or --noise-seeds")
    if not dist.main:  # workers under torchrun: store their batches in rank 0's run folder, then stop
        path = distributed.broadcast_object(None, dist)
        run_sweep(p.tokenizer, p.source, p.sweep, path, dist=dist)
        return None, None
    redo = (lambda path: drop_unsaved(path, req.save_recons, p.sweep.budgets,
                                      official_stream=uses_global_stream(p.sweep.options))) if req.save_recons else None
    # --noise-seeds N > 1 is part of this run's identity (N = 1 keeps the run ids of earlier runs).
    config = {**p.config, "noise_seeds": seeds} if len(seeds) > 1 else p.config
    with CommandRun("fid", config, SweepPlan.of(p), results_dir=results_dir, run_id=run_id,
                    overwrite=overwrite, reuse_finished=reuse_finished, out=out, on_resume=redo) as run:
        distributed.broadcast_object(run.dir.path, dist)
        inputs = run.sweep(on_batch=on_batch, dist=dist)
        result = inputs.result
        if req.save_recons:
            warn_missing_recons(req.save_recons, result)
        metrics = summarize(result, command="fid", dataset=inputs.dataset, preprocess=inputs.preprocess, seed=seed,
                            fid_ref=ref, kid=kid, fid=req.fid)
        run.dir.write_metrics(metrics)
        run.dir.write_per_image(result.per_image)
        write_figures(run.dir, result, metrics, title=figure_title(inputs, "fid"))
        if compute:
            # FLOPs per image and stage (no timing: the sweep's own wall time is in meta.json).
            # Counted once per architecture and cached (FLOPs depend on shapes only), with a progress line.
            table = cached_compute_table(p.tokenizer, result.budgets, result.info["device"], fid=req.fid, seed=seed,
                                         say=_say if progress else None)
            write_csv(table, run.dir.path / "compute.csv")
        noise = {}
        if len(seeds) > 1:  # the same sweep again per seed, each resumable in noise/seed<S>/
            runs = noise_spread.run_seeds(SweepPlan.of(p), inputs, run.dir.path, seeds, on_batch=on_batch)
            write_csv(noise_spread.spread_table(runs, fid=req.fid, fid_ref=ref), run.dir.file("noise_spread.csv"))
            noise = {"noise_seeds": noise_spread.meta(seeds)}
        info = result.info
        run.finish(seed, {**noise,
            "fid_reference": p.config["fid_reference"], "fid_reference_n": ref.n if ref is not None else None,
            "precision": info["precision"],
            "approximate_precision": info["approximate"], "batch_size": info["batch_size"],
            "oom_chunk": info["oom_chunk"], "processes": dist.world,
            "save_recons": portable(req.save_recons) if req.save_recons else None,
        })
    return run.dir, metrics


def _say(text: str) -> None:
    print(text, flush=True)


def warn_missing_recons(folder: str, result: Any) -> int:
    """Warn when images of a resumed run have no PNG under ``--save-recons`` (they were not rebuilt)."""
    import logging

    from alit_eval.engine.recons import ORIGINAL, recon_path

    ids = result.per_image["image_id"].unique()
    missing = [i for i in ids if not all(recon_path(folder, k, i).is_file() for k in (ORIGINAL, *result.budgets))]
    if missing:
        logging.getLogger(__name__).warning(
            "--save-recons: %d of %d images were resumed from the run folder and have no PNGs in %s; "
            "rerun with --overwrite (or another --run-id) to write them all", len(missing), len(ids), folder)
    return len(missing)


def write_figures(run_dir: Any, result: Any, metrics: Any, *, title: str = "") -> None:
    """Metrics against tokens, and the strip of example reconstructions (PNGs under ``examples/``).

    `title` names checkpoint, data and n (`alit_eval.analysis.skeleton.figure_title`).
    """
    if plots.drawing():
        plots.save(plots.metrics_vs_tokens(metrics, title=title), run_dir.figures, "metrics_vs_tokens")
    examples = write_examples(result, run_dir.path / "examples")
    if len(examples):
        write_csv(examples.assign(path=[str(Path(x).relative_to(run_dir.path)) for x in examples["path"]]),
                  run_dir.path / "examples" / "examples.csv")
        if plots.drawing():
            plots.save(plots.example_strip(examples, title=title), run_dir.figures, "examples")
