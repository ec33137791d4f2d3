"""Token selection criteria (TSC): which budget each image gets, and what that allocation costs.

The official criterion (alit_official.md §3, ``encode()``): the first iteration whose L1 is below the
threshold; if none, the iteration with the lowest L1 (first on ties), which is not necessarily the
last. The official L1 is a mean over the whole batch; alit-eval applies it per image, so an image's
budget does not depend on which images share its batch. `select_batch_mean` reproduces the
batch-level rule for faithfulness (``--official-batch-criterion N``).

Everything here is a pure function of the engine's per-image table (and, for the variable-token
FID, of the stored Inception features); nothing runs the tokenizer.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from alit_eval.engine.store import ShardStore
from alit_eval.errors import AlitEvalError
from alit_eval.metrics.feature_distance import FeatureStats
from alit_eval.metrics.specs import PER_IMAGE, direction


# criterion -> (per-image column, direction), from the metric specs. An image "reaches" a threshold
# when its value is strictly below it (lower is better) or strictly above it (higher is better), as
# the official `<`. ``official-l1`` is the official encode() error: L1 of the raw, unclamped float
# reconstruction (``l1_raw``); ``l1`` is measured on the clamped uint8 reconstruction the other
# metrics see, which picks another iteration in 5/8 (VQGAN) and 7/8 (VAE) of the official fixture's
# tsc.json cases (measured with the engine's rounding; `official-l1` matches all 16).
CRITERIA: dict[str, tuple[str, str]] = {
    **{m: (m, direction(m)) for m in PER_IMAGE}, "official-l1": ("l1_raw", direction("l1_raw"))}
FALLBACKS: tuple[str, ...] = ("min-error", "max-budget")
OFFICIAL_L1_THRESHOLD = 0.07  # README default of the official encode()
QUALITY = PER_IMAGE


def select_official(values: Sequence[float], threshold: float) -> tuple[int, str]:
    """Index chosen by the official L1 criterion over per-budget errors (ascending budgets).

    Returns:
        ``(index, how)`` with ``how`` either ``"first_below_threshold"`` or ``"fallback_min_l1"``.
    """
    from alit_eval.tokenizers.criteria import official_decision

    return official_decision(values, threshold)


def criterion_spec(criterion: str) -> tuple[str, str]:
    """``(per-image column, "lower" | "higher")`` of a criterion; a clear error for an unknown one."""
    try:
        return CRITERIA[criterion]
    except KeyError:
        raise AlitEvalError(f"unknown criterion {criterion!r}; valid: {', '.join(CRITERIA)}") from None


def select_indices(values: np.ndarray, threshold: float, criterion: str = "l1",
                   fallback: str = "min-error") -> tuple[np.ndarray, np.ndarray]:
    """Per image, the first budget reaching `threshold`; images that never reach it are censored.

    Args:
        values: ``[n, n_budgets]`` per-image metric values, budgets ascending (NaN = unknown,
            never reaches).
        threshold: the target (an L1/MSE/LPIPS to stay below, a PSNR in dB or an SSIM to exceed).
        criterion: a key of `CRITERIA` (sets the direction).
        fallback: for censored images, ``min-error`` (the best budget, first on ties: the official
            behaviour) or ``max-budget`` (the largest budget).

    Returns:
        ``(index [n] int64 into the budgets, censored [n] bool)``.
    """
    _, direction = criterion_spec(criterion)
    if fallback not in FALLBACKS:
        raise AlitEvalError(f"unknown fallback {fallback!r}; valid: {', '.join(FALLBACKS)}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] == 0:
        raise ValueError("values must be [n_images, n_budgets] with at least one budget")
    ok = v < threshold if direction == "lower" else v > threshold  # NaN compares False
    reached = ok.any(axis=1)
    first = np.argmax(ok, axis=1)
    if fallback == "max-budget":
        back = np.full(len(v), v.shape[1] - 1)
    else:
        badness = v if direction == "lower" else -v
        badness = np.where(np.isnan(badness), np.inf, badness)
        back = np.argmin(badness, axis=1)  # first on ties, as np.argmin and the official code
    return np.where(reached, first, back).astype(np.int64), ~reached


def select_batch_mean(values: np.ndarray, threshold: float, batch_size: int, criterion: str = "l1",
                      fallback: str = "min-error") -> tuple[np.ndarray, np.ndarray]:
    """The official batch-level rule: consecutive groups of `batch_size` images share one budget.

    Each group's value per budget is the mean of its images' values (for L1 and MSE this equals the
    official mean over the whole batch tensor, since images have equal size); the group then gets
    `select_indices` of that mean. The last group may be smaller. Rows must be in dataset order.

    Returns:
        ``(index [n], censored [n])``, constant within each group.
    """
    if batch_size < 1:
        raise AlitEvalError(f"--official-batch-criterion must be >= 1, got {batch_size}")
    v = np.asarray(values, dtype=np.float64)
    starts = np.arange(0, len(v), batch_size)
    means = np.stack([np.nanmean(v[s : s + batch_size], axis=0) for s in starts]) if len(v) else v
    idx, cens = select_indices(means, threshold, criterion, fallback)
    sizes = np.diff(np.append(starts, len(v)))
    return np.repeat(idx, sizes), np.repeat(cens, sizes)


def metric_matrix(per_image: "pd.DataFrame", column: str) -> tuple["pd.DataFrame", list[int], np.ndarray]:
    """Pivot the per-image table to ``[n_images, n_budgets]`` in dataset order.

    Returns:
        ``(images, budgets, values)``: one row per image (image_id, index and the per-image extra
        columns of the first budget's row), the ascending budgets, the matrix of `column`.
    """
    if column not in per_image.columns or per_image[column].isna().all():
        hint = {"lpips": " (LPIPS is only computed with --lpips-weights)",
                "l1_raw": " (sweeps made before the official-l1 criterion existed lack it: rerun without --from-run)",
                }.get(column, "")
        raise AlitEvalError(f"the per-image table has no {column!r} values{hint}; choose another --criterion")
    wide = per_image.pivot(index="index", columns="budget", values=column).sort_index()
    budgets = [int(b) for b in wide.columns]
    images = per_image.sort_values(["index", "budget"]).drop_duplicates("index").set_index("index").loc[wide.index]
    return images.reset_index(), budgets, wide.to_numpy(dtype=np.float64)


def resolve_thresholds(specs: Sequence[str | float], per_image: "pd.DataFrame",
                       criterion: str) -> list[tuple[str, float]]:
    """Turn threshold specs into numbers: a number, ``auto`` (= ``q0.5``) or ``qP``.

    ``qP`` is the P-quantile of the per-image criterion metric at the middle budget (the
    ``len(budgets) // 2``-th ascending), a data-adapted threshold for tokenizers whose errors differ
    from ImageNet-scale ALIT (where the official default is 0.07).

    Returns:
        ``[(spec as given, value)]`` in the order given, duplicates of the value removed.
    """
    column, _ = criterion_spec(criterion)
    out: list[tuple[str, float]] = []
    for spec in specs:
        text = str(spec).strip().lower()
        if text == "auto" or text.startswith("q"):
            q = 0.5 if text == "auto" else _quantile(text)
            budgets = sorted(per_image["budget"].unique())
            mid = budgets[len(budgets) // 2]
            vals = per_image.loc[per_image["budget"] == mid, column].to_numpy(dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            if not len(vals):
                raise AlitEvalError(f"threshold {spec!r}: no finite {column} values at budget {mid}")
            value = float(np.quantile(vals, q))
        else:
            try:
                value = float(text)
            except ValueError:
                raise AlitEvalError(f"threshold {spec!r} is not a number, 'auto' or 'qP' (e.g. q0.25)") from None
        if all(value != v for _, v in out):
            out.append((str(spec), value))
    return out


def _quantile(text: str) -> float:
    try:
        q = float(text[1:])
    except ValueError:
        raise AlitEvalError(f"threshold {text!r}: write a quantile as qP with 0 <= P <= 1, e.g. q0.25") from None
    if not 0.0 <= q <= 1.0:
        raise AlitEvalError(f"threshold {text!r}: the quantile must lie in [0, 1]")
    return q


def selection_table(per_image: "pd.DataFrame", thresholds: Sequence[tuple[str, float]], *, criterion: str = "l1",
                    fallback: str = "min-error", batch_size: int | None = None) -> "pd.DataFrame":
    """Selected budget per image and threshold (the ``selection.parquet`` table).

    Args:
        per_image: the engine's per-image table (one row per image and budget).
        thresholds: ``[(spec, value)]`` from `resolve_thresholds`.
        criterion, fallback: see `select_indices`.
        batch_size: apply the official batch-mean rule over groups of this many images (None: per image).

    Returns:
        One row per image and threshold: image_id, index, threshold, threshold_spec, criterion,
        fallback, batch_size (0 = per image), selected_budget, censored, required_tokens (`required_tokens`),
        the quality metrics at the selected budget, and label/complexity columns when the per-image table
        has them.
    """
    column, _ = criterion_spec(criterion)
    images, budgets, values = metric_matrix(per_image, column)
    quality = {m: metric_matrix(per_image, m)[2] for m in dict.fromkeys((*QUALITY, column))
               if m in per_image and per_image[m].notna().any()}
    keep = [c for c in ("label", "complexity", "complexity_level", "n_objects") if c in images]
    frames = []
    rows = np.arange(len(images))
    for spec, thr in thresholds:
        if batch_size:
            idx, cens = select_batch_mean(values, thr, batch_size, criterion, fallback)
        else:
            idx, cens = select_indices(values, thr, criterion, fallback)
        frame = pd.DataFrame({
            "image_id": images["image_id"].astype(str), "index": images["index"].astype("int64"),
            "threshold": float(thr), "threshold_spec": spec, "criterion": criterion, "fallback": fallback,
            "batch_size": int(batch_size or 0), "selected_budget": np.asarray(budgets, dtype=np.int64)[idx],
            "censored": cens.astype(bool),
        })
        frame["required_tokens"] = required_tokens(frame, budgets[-1])
        for m, mat in quality.items():
            frame[m] = mat[rows, idx]
        for c in keep:
            frame[c] = images[c].to_numpy()
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def required_tokens(selection: "pd.DataFrame", max_budget: int) -> np.ndarray:
    """Tokens each image needs: its selected budget, or `max_budget` when censored (flagged in the table).

    Censored images never reach the threshold, so their true requirement is at least the largest
    budget; the analyses count them there explicitly instead of at the fallback's budget.
    """
    return np.where(selection["censored"].to_numpy(bool), max_budget, selection["selected_budget"].to_numpy())


def tokens_label(selection: "pd.DataFrame", max_budget: int) -> list[str]:
    """Figure/table labels of each image's budget: ``"48 tok"``, or ``"censored (>64 tok)"`` for an image
    that never reaches the threshold (its fallback budget is not a budget it needs)."""
    return [f"censored (>{max_budget} tok)" if c else f"{int(b)} tok"
            for b, c in zip(selection["selected_budget"], selection["censored"].astype(bool))]


def fixed_budget_equivalent(budgets: Sequence[int], curve: Sequence[float], target: float,
                            direction: str = "lower") -> tuple[float, str]:
    """The (fractional) fixed budget whose mean quality equals `target`, by linear interpolation.

    Walks the fixed-budget curve from the smallest budget and returns the first crossing of
    `target` (the curve need not be monotone).

    Returns:
        ``(budget, status)``: status ``ok``; ``at-most-smallest`` (the smallest budget is already as
        good: budget = smallest); or ``unreachable`` (no fixed budget is as good: NaN).
    """
    b = np.asarray(budgets, dtype=np.float64)
    c = np.asarray(curve, dtype=np.float64)
    good = (lambda v: v <= target) if direction == "lower" else (lambda v: v >= target)
    if good(c[0]):
        return float(b[0]), "at-most-smallest"
    for i in range(1, len(c)):
        if good(c[i]):
            frac = (target - c[i - 1]) / (c[i] - c[i - 1])
            return float(b[i - 1] + frac * (b[i] - b[i - 1])), "ok"
    return float("nan"), "unreachable"


def variable_token_stats(store: "ShardStore", selections: Mapping[Any, Mapping[int, int]]) -> dict[Any, "FeatureStats"]:
    """Inception statistics of sets where every image uses its own selected budget (KARL Tab. 6).

    One pass over the shards: per shard and selection, each image's feature row is taken from
    ``feat_<its selected budget>`` (rows kept in shard order, so a selection of one budget for every
    image reproduces that budget's statistics exactly). The reference is ``feat_ref`` under key
    ``"ref"``.

    Args:
        store: the sweep's shards (with Inception features).
        selections: key -> {dataset index: selected budget}.

    Returns:
        key -> `FeatureStats`, plus ``"ref"``.
    """
    used = sorted({int(b) for sel in selections.values() for b in sel.values()})
    keys = ["index", "feat_ref", *(f"feat_{b}" for b in used)]
    out: dict[Any, FeatureStats] = {}
    for shard in store.iter(keys):
        missing = [k for k in keys if k not in shard]
        if missing:
            raise AlitEvalError(f"no Inception features {missing} in the shards; run the sweep with FID on")
        ref = shard["feat_ref"]
        if not len(ref):
            continue
        out.setdefault("ref", FeatureStats(ref.shape[1])).update(torch.from_numpy(ref))
        index = shard["index"].tolist()
        for name, sel in selections.items():
            chosen = np.array([sel[i] for i in index], dtype=np.int64)
            rows = np.empty_like(ref)
            for b in np.unique(chosen):
                mask = chosen == b
                rows[mask] = shard[f"feat_{b}"][mask]
            out.setdefault(name, FeatureStats(ref.shape[1])).update(torch.from_numpy(rows))
    return out
