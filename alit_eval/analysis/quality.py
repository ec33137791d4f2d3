"""Reconstruction quality per budget: mean per-image metrics with CIs, and rFID (a primitive).

Turns the engine's per-image table and feature statistics into long-format metric rows: mean
L1/MSE/PSNR/SSIM/LPIPS per budget with a 95% bootstrap CI, and rFID per budget against the
preprocessed originals of the same images (ALIT/TiTok/One-D-Piece convention) or a reference
statistics file. PSNR of a pixel-identical reconstruction is infinite; means clip it at
`PSNR_CAP_DB` so one perfect image cannot make the mean infinite (stated in results/README.md).
Used by `fid`, `allocate`, `familiarity` and `rate-distortion`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alit_eval.analysis.stats import bootstrap_mean_ci
from alit_eval.engine.sweep import accumulate
from alit_eval.metrics.feature_distance import FidStats, FrechetReference, kernel_inception_distance
from alit_eval.metrics.specs import PER_IMAGE
from alit_eval.results.schema import format_condition, metrics_frame

PSNR_CAP_DB = 100.0


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
