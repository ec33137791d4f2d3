"""`alit-eval fid-stats`: reference FID statistics of a dataset, through the sweep engine.

A reference-only sweep (no tokenizer, no budgets) stores the originals' Inception features in a
resumable run folder under ``results/fid-stats/``; the mean and covariance are then written as an
``.npz`` with ``mu``, ``sigma`` and ``n`` (the layout pytorch-fid and clean-fid also read).
"""

from __future__ import annotations

from pathlib import Path

from alit_eval.analysis.skeleton import CommandRun, skipped_images
from alit_eval.data.sources import open_source
from alit_eval.engine.config import SweepConfig
from alit_eval.engine.device import resolve_device
from alit_eval.engine.plan import SweepPlan
from alit_eval.engine.prepare import Prepared
from alit_eval.engine.sweep import accumulate
from alit_eval.metrics.feature_distance import save_stats_npz


def compute_reference_stats(data: str, out: str | Path, *, size: int, preprocess: str, limit: int | None,
                            batch_size: int, workers: int, fid_resize: str, inception_weights: str | None,
                            device: str, offline: bool, results_dir: str | Path) -> int:
    """Compute and save reference statistics; return the number of images used."""
    source = open_source(data, size=size, preprocess=preprocess, limit=limit)
    dev = resolve_device(device)
    cfg = SweepConfig(budgets=[], batch_size=batch_size, workers=workers, device=str(dev),
                      fid=True, fid_resize=fid_resize, inception_weights=inception_weights, offline=offline,
                      n_examples=0)
    config = {"data": data if data.startswith("demo-") else str(Path(data).resolve()), "size": size,
              "preprocess": source.preprocess, "limit": limit, "fid_resize": fid_resize,
              "inception_weights": inception_weights}
    plan = SweepPlan(config, prepared=Prepared(None, {}, source, cfg, config))
    with CommandRun("fid-stats", config, plan, results_dir=results_dir) as run:
        stats = accumulate(run.sweep().result.store, ["feat_ref"])["feat_ref"]
        save_stats_npz(out, stats.mean(), stats.cov(), stats.n)
        run.finish(None, {"out": str(Path(out).name), "n": stats.n,
                          "inception": run.inputs.result.info.get("inception"),
                          "skipped_images": skipped_images(run.inputs)}, device=str(dev), standard=False)
    return int(stats.n)
