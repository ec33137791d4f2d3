"""Reference FID statistics of a dataset (``alit-eval fid-stats``), through the sweep engine.

A reference-only sweep (no tokenizer, no budgets) stores the originals' Inception features in a
resumable run folder under ``results/fid-stats/``; the mean and covariance are then written as an
``.npz`` with ``mu``, ``sigma`` and ``n`` (the layout pytorch-fid and clean-fid also read).
"""

from __future__ import annotations

from pathlib import Path


def compute_reference_stats(data: str, out: str | Path, *, size: int, preprocess: str, limit: int | None,
                            batch_size: int, workers: int, fid_resize: str, inception_weights: str | None,
                            device: str, offline: bool, results_dir: str | Path) -> int:
    """Compute and save reference statistics; return the number of images used."""
    from alit_eval.data.sources import open_source
    from alit_eval.engine.sweep import SweepConfig, accumulate, resolve_device, run_sweep
    from alit_eval.metrics.fid import save_stats_npz
    from alit_eval.results.io import open_run

    source = open_source(data, size=size, preprocess=preprocess, limit=limit)
    dev = resolve_device(device)
    cfg = SweepConfig(budgets=[], halting="off", batch_size=batch_size, workers=workers, device=str(dev),
                      fid=True, fid_resize=fid_resize, inception_weights=inception_weights, offline=offline,
                      n_examples=0)
    config = {"data": data if data.startswith("demo-") else str(Path(data).resolve()), "size": size,
              "preprocess": source.preprocess, "limit": limit, "fid_resize": fid_resize,
              "inception_weights": inception_weights}
    run = open_run(results_dir, "fid-stats", config=config)
    try:
        result = run_sweep(None, source, cfg, run.path)
        stats = accumulate(result.store, ["feat_ref"])["feat_ref"]
        save_stats_npz(out, stats.mean(), stats.cov(), stats.n)
        run.finish(seed=None, device=str(dev), extra={"out": str(Path(out).name), "n": stats.n,
                                                      "inception": result.info.get("inception"),
                                                      "skipped_images": [{"id": i, "error": e} for i, e in result.failed]})
    finally:
        run.release()
    return int(stats.n)
