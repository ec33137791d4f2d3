"""Reconstruction quality per budget: mean per-image metrics with CIs, and rFID (a primitive).

Turns the engine's per-image table and feature statistics into long-format metric rows: the mean
of every per-image metric (L1/MSE/PSNR/SSIM/LPIPS and any added measure's) per budget with a 95%
bootstrap CI, then each registered measure's per-set rows (`alit_eval.metrics.measures`): rFID per
budget against the preprocessed originals of the same images (ALIT/TiTok/One-D-Piece convention) or
a reference statistics file, and KID. PSNR of a pixel-identical reconstruction is infinite; means clip it at
`PSNR_CAP_DB` so one perfect image cannot make the mean infinite (stated in results/README.md).
Used by `fid`, `allocate`, `familiarity` and `rate-distortion`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alit_eval.analysis.stats import bootstrap_mean_ci
from alit_eval.engine.plan import has_features
from alit_eval.engine.sweep import accumulate
from alit_eval.metrics import specs
from alit_eval.metrics.feature_distance import FidStats
from alit_eval.metrics.measures import SetView, all_measures
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
        for m in specs.PER_IMAGE:  # every per-image metric, an added measure's too
            if m not in sub or sub[m].isna().all():
                continue
            v = sub[m].to_numpy(dtype=np.float64)
            if m == "psnr":
                v = np.minimum(v, PSNR_CAP_DB)
            lo, hi = bootstrap_mean_ci(v, seed=seed)
            rows.append({**base, "budget": b, "metric": m, "value": float(np.mean(v)), "n": int(v.size),
                         "ci_low": lo, "ci_high": hi, "condition": ""})
    view = SetView(result, seed, {"fid": fid, "fid_ref": fid_ref, "kid": kid}, accumulate)
    for measure in all_measures():  # per-set statistics (rFID, KID, ...) of the measures whose features are stored
        if measure.builtin or (measure.feature_key and has_features(result.store, result.budgets, measure.feature_key)):
            for row in measure.set_rows(view):
                rows.append({**base, **row, "condition": format_condition(**row.get("condition", {}))})
    return metrics_frame(rows)
