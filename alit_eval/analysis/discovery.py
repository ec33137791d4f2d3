"""Object discovery from decoder attention (`alit-eval discovery`).

Every 2D cell is assigned to the token it attends to most (raw attention: one query's weights over
the keys form one softmax, so they compare across tokens), every pixel takes its cell's token (the
cell's query predicts the code that decodes those pixels), and the segmentation is scored against
instance masks with FG-ARI (adjusted Rand index over foreground pixels, as Slot Attention and its
successors report it) and mIoU (each ground-truth object Hungarian-matched to a distinct token;
unmatched objects count 0). Two floors: a fixed grid with as many cells as tokens (`grid`), and one
with as many cells as tokens the argmax actually uses in that image (`grid-used`). The maps
themselves and their figures live in `alit_eval.analysis.attention_maps`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from scipy.optimize import linear_sum_assignment
from torchvision.transforms import InterpolationMode, functional as TF

from alit_eval.analysis.attention_maps import INDEXING, default_layer, grid_partition, upsample_labels
from alit_eval.analysis.skeleton import CommandRun, figure_title
from alit_eval.analysis.stats import bootstrap_mean_ci
from alit_eval.data import demo
from alit_eval.data.demo import sample_id
from alit_eval.engine.plan import SweepPlan
from alit_eval.engine.prepare import prepare
from alit_eval.errors import AlitEvalError, DataError
from alit_eval.results import plots, plots_tokens
from alit_eval.results.schema import format_condition, metrics_frame, parse_condition


def _dense(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted distinct values, index of each item's value)``, as ``np.unique(return_inverse)``."""
    x = np.asarray(x).ravel()
    if x.size and np.issubdtype(x.dtype, np.integer) and 0 <= x.min() and x.max() < 1 << 20:
        present = np.bincount(x) > 0  # O(n) for the small non-negative ids of masks and tokens
        return np.flatnonzero(present), (np.cumsum(present) - 1)[x]
    return np.unique(x, return_inverse=True)


def contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Counts of each (a, b) label pair: ``[n_a, n_b]``, rows and columns in sorted label order."""
    _, ai = _dense(a)
    _, bi = _dense(b)
    if not ai.size:
        return np.zeros((0, 0), np.int64)
    na, nb = int(ai.max()) + 1, int(bi.max()) + 1
    return np.bincount(ai * nb + bi, minlength=na * nb).reshape(na, nb)


def adjusted_rand_index(true: np.ndarray, pred: np.ndarray) -> float:
    """Adjusted Rand index of two labellings of the same items (Hubert & Arabie 1985).

    Uses the pair-counting form (the one scikit-learn's ``adjusted_rand_score`` uses), with exact
    integer arithmetic, and the same convention: 1.0 when neither labelling splits a pair the
    other joins (e.g. both put everything in one cluster). NaN for no items.
    """
    t = np.asarray(true).ravel()
    if t.size == 0:
        return float("nan")
    c = contingency(t, pred)
    n = int(t.size)
    sum_sq = int((c.astype(np.int64) ** 2).sum())
    rows = int((c.sum(1).astype(np.int64) ** 2).sum())
    cols = int((c.sum(0).astype(np.int64) ** 2).sum())
    tp, fp, fn = sum_sq - n, cols - sum_sq, rows - sum_sq  # ordered pairs, as in the pair confusion matrix
    tn = n * n - fp - fn - sum_sq
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def fg_ari(true: np.ndarray, pred: np.ndarray) -> float:
    """ARI over foreground pixels (``true > 0``) only; NaN when there is no foreground."""
    fg = np.asarray(true) > 0
    return adjusted_rand_index(np.asarray(true)[fg], np.asarray(pred)[fg]) if fg.any() else float("nan")


def hungarian_miou(true: np.ndarray, pred: np.ndarray) -> float:
    """Mean IoU of ground-truth objects (ids > 0) after one-to-one Hungarian matching to segments.

    IoU is over all pixels; an object left unmatched (more objects than segments) scores 0.
    NaN when there is no object.
    """
    t = np.asarray(true).ravel()
    ids = _dense(t)[0]
    objects = ids[ids > 0]
    if not objects.size:
        return float("nan")
    full = contingency(t, pred).astype(np.float64)  # rows follow np.unique(t), columns np.unique(pred)
    c = full[np.searchsorted(ids, objects)]
    iou = c / (c.sum(1)[:, None] + full.sum(0)[None, :] - c)
    r, k = linear_sum_assignment(iou, maximize=True)
    return float(iou[r, k].sum() / len(objects))


# ----------------------------------------------------------------------------------- masks


def preprocess_mask(mask: Any, mode: str, size: int) -> np.ndarray:
    """Apply an image preprocess mode's geometry to an instance-mask image (nearest, pad with 0).

    Args:
        mask: PIL image of integer ids (mode L, P, I or I;16) at the original image's size.
        mode: ``center-crop`` or ``resize-center-crop`` (as `alit_eval.data.transforms`).
        size: output side S.

    Returns:
        int64 ``[S, S]`` ids, aligned with the preprocessed image.
    """
    if mask.mode not in ("L", "P", "I", "I;16"):
        mask = mask.convert("L")
    if mode == "resize-center-crop":
        mask = TF.resize(mask, [size], interpolation=InterpolationMode.NEAREST)
    elif mode != "center-crop":
        raise AlitEvalError(f"unknown preprocess mode {mode!r} for masks")
    arr = torch.from_numpy(np.array(mask).astype(np.int64))[None]
    return TF.center_crop(arr, [size, size])[0].numpy()


def folder_masks(folder: str | Path, image_ids: Sequence[str], mode: str, size: int) -> dict[str, np.ndarray]:
    """Instance masks for `image_ids` from PNGs under `folder`, matched by relative path, then stem.

    A mask ``<folder>/<id without extension>.png`` wins over any ``<stem>.png`` found deeper.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"--masks {folder}: not a folder (expected instance-mask PNGs named like the images)")
    files = sorted(root.rglob("*.png"))
    by_rel = {p.relative_to(root).with_suffix("").as_posix(): p for p in files}
    by_stem: dict[str, Path] = {}
    for p in files:
        by_stem.setdefault(p.stem, p)
    out = {}
    for i in image_ids:
        path = by_rel.get(Path(i).with_suffix("").as_posix()) or by_stem.get(Path(i).stem)
        if path is not None:
            with Image.open(path) as im:
                out[i] = preprocess_mask(im, mode, size)
    if not out:
        raise DataError(f"no mask in {folder} matches an image name (e.g. {image_ids[0]!r} -> <stem>.png)")
    return out


def demo_masks(split: str, indices: Sequence[int], ids: Sequence[str], seed: int, size: int) -> dict[str, np.ndarray]:
    """Ground-truth instance masks of demo images (None-free: splits without masks give {})."""
    out = {}
    for i, image_id in zip(indices, ids):
        s = demo.generate(split, int(i), seed=seed, size=size)
        if s.has_masks:
            out[image_id] = s.masks.astype(np.int64)
    return out


# ------------------------------------------------------------------------------- discovery


def segmentation_scores(mask: np.ndarray, seg: np.ndarray) -> tuple[float, float]:
    """``(FG-ARI, Hungarian mIoU)`` of a segmentation against an instance mask (same shape)."""
    return fg_ari(mask, seg), hungarian_miou(mask, seg)


def discovery_table(store: Any, budgets: Sequence[int], masks: dict[str, np.ndarray], size: int, *,
                    min_objects: int = 1) -> Any:
    """Per (image, budget) scores of the argmax-token segmentation at every layer, and the grids.

    Args:
        store: the sweep's `ShardStore` with ``cap_attention_argmax_<budget>`` ``[n, layers, gh, gw]``.
        budgets: budgets to score.
        masks: image id -> int ``[size, size]`` instance ids (0 = background).
        size: image side in pixels.
        min_objects: skip images with fewer objects in their mask.

    Returns:
        DataFrame with image_id, budget, mask_objects, ``{fg_ari,miou}_grid`` and per layer l
        ``{fg_ari,miou}_L<l>``, ``{fg_ari,miou}_gridused_L<l>``, ``tokens_used_L<l>``.
    """
    ids = store.concat("id").astype(str)
    n_obj = {i: int(np.unique(m[m > 0]).size) for i, m in masks.items()}
    use = [k for k, i in enumerate(ids) if i in masks and n_obj[i] >= min_objects]
    grids: dict[int, np.ndarray] = {}

    def grid(n: int) -> np.ndarray:
        if n not in grids:
            grids[n] = grid_partition(n, size)
        return grids[n]

    records = []
    for b in budgets:
        cells = np.rint(store.concat(f"cap_attention_argmax_{b}")).astype(np.int64)  # stored as float
        for k in use:
            m = masks[ids[k]]
            rec: dict[str, Any] = {"image_id": ids[k], "budget": int(b), "mask_objects": n_obj[ids[k]]}
            rec["fg_ari_grid"], rec["miou_grid"] = segmentation_scores(m, grid(int(b)))
            for layer in range(cells.shape[1]):
                used = int(np.unique(cells[k, layer]).size)
                rec[f"tokens_used_L{layer}"] = used
                seg = upsample_labels(cells[k, layer], size)
                rec[f"fg_ari_L{layer}"], rec[f"miou_L{layer}"] = segmentation_scores(m, seg)
                rec[f"fg_ari_gridused_L{layer}"], rec[f"miou_gridused_L{layer}"] = segmentation_scores(m, grid(used))
            records.append(rec)
    return pd.DataFrame(records)


def discovery_metrics(table: Any, budgets: Sequence[int], *, base: dict[str, Any], indexing: str,
                      min_objects: int, seed: int) -> Any:
    """Mean FG-ARI / mIoU (95% bootstrap CIs) per budget, layer and method, plus the paired gain
    of tokens over the N-cell grid (``<metric>_gain``: a CI above 0 means the tokens beat it)."""
    rows = []
    layers = sorted(int(c.removeprefix("fg_ari_L")) for c in table.columns if c.startswith("fg_ari_L"))

    def add(values, metric, budget, **cond):
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        lo, hi = bootstrap_mean_ci(v, seed=seed)
        rows.append({**base, "budget": int(budget), "metric": metric, "value": float(v.mean()) if v.size else None,
                     "n": int(v.size), "ci_low": lo, "ci_high": hi,
                     "condition": format_condition(indexing=indexing, min_objects=min_objects, **cond)})

    for b in budgets:
        d = table[table["budget"] == b] if len(table) else table
        if not len(d):
            continue
        for metric in ("fg_ari", "miou"):
            add(d[f"{metric}_grid"], metric, b, method="grid")
            for layer in layers:
                add(d[f"{metric}_L{layer}"], metric, b, method="tokens", layer=layer)
                add(d[f"{metric}_gridused_L{layer}"], metric, b, method="grid-used", layer=layer)
                add(d[f"{metric}_L{layer}"] - d[f"{metric}_grid"], f"{metric}_gain", b, baseline="grid", layer=layer)
    return metrics_frame(rows)


def _dataset_ids(source: Any) -> tuple[list[str], list[int]]:
    ds = source.dataset
    if hasattr(ds, "records"):
        return [r.id for r in ds.records], list(range(len(ds.records)))

    return [sample_id(ds.split, i) for i in range(len(ds))], list(range(len(ds)))


def run_discovery(req: Any, *, indexing: str = "corrected", min_objects: int = 1, masks_dir: str | None = None,
                  seed: int, device: str, offline: bool, results_dir: Any, run_id: str | None = None,
                  overwrite: bool = False, reuse_finished: bool = False, out: Any = None, progress: bool = True) -> tuple[Any, Any, dict]:
    """`alit-eval discovery` end to end; returns ``(run_dir, metrics, summary)``."""
    if indexing not in INDEXING:
        raise AlitEvalError(f"--indexing must be one of {', '.join(INDEXING)}, got {indexing!r}")
    opts = {"indexing": indexing, "min_objects": min_objects,
            "masks": None if masks_dir is None else str(Path(masks_dir).expanduser().resolve())}
    p = prepare(replace(req, fid=False, capture=("attention_argmax",), attention=indexing,
                        extra={**req.extra, "discovery": opts}),
                seed=seed, device=device, offline=offline, progress=progress)
    size = p.tokenizer.image_size
    ids, indices = _dataset_ids(p.source)
    if masks_dir is not None:
        masks = folder_masks(masks_dir, ids, p.source.preprocess, size)
    elif p.source.kind == "demo":
        masks = demo_masks(p.source.name, indices, ids, p.source.dataset.seed, size)
    else:
        raise DataError("object discovery needs instance masks: pass --masks DIR (PNG ids, 0 = background)")
    if not masks:
        raise DataError(f"{p.source.name} has no instance masks; use demo-scenes, demo-unfamiliar or --masks DIR")
    with CommandRun("discovery", p.config, SweepPlan.of(p), results_dir=results_dir, run_id=run_id,
                    overwrite=overwrite, reuse_finished=reuse_finished, out=out) as run:
        inputs = run.sweep()
        result = inputs.result
        table = discovery_table(result.store, result.budgets, masks, size, min_objects=min_objects)
        if not len(table):
            raise DataError(f"no image has a mask with at least {min_objects} object(s); lower --min-objects")
        base = {"command": "discovery", "dataset": inputs.dataset, "preprocess": inputs.preprocess}
        metrics = discovery_metrics(table, result.budgets, base=base, indexing=indexing, min_objects=min_objects,
                                    seed=seed)
        n_layers = sum(c.startswith("fg_ari_L") for c in table.columns)
        summary = _summary(metrics, max(result.budgets), default_layer(n_layers))
        run.dir.write_metrics(metrics)
        run.dir.write_per_image(result.per_image.merge(table, on=["image_id", "budget"], how="left"))
        if plots.drawing():
            plots.save(plots_tokens.discovery_vs_tokens(metrics, title=figure_title(inputs, "discovery")),
                       run.dir.figures, "discovery_vs_tokens")
            examples = _examples(result.store, masks, table, max(result.budgets), default_layer(n_layers), size)
            if examples[0]:
                plots.save(plots_tokens.discovery_examples(*examples), run.dir.figures, "discovery_examples")
        run.finish(seed, {"indexing": indexing, "decoder_layers": n_layers,
                          "n_scored_images": int(table["image_id"].nunique()), "summary": summary})
    return run.dir, metrics, summary


def _summary(metrics: Any, budget: int, layer: int) -> dict[str, Any]:
    """Tokens vs the N-cell grid at the largest budget and the default layer."""
    out: dict[str, Any] = {"budget": budget, "layer": layer}
    for _, r in metrics[metrics["budget"] == budget].iterrows():
        c = parse_condition(r["condition"])
        if c.get("layer") not in (None, str(layer)):
            continue
        key = f"{r['metric']}_{c.get('method', 'vs_grid')}"
        out[key] = {"value": r["value"], "ci": [r["ci_low"], r["ci_high"]], "n": int(r["n"])}
    for metric in ("fg_ari", "miou"):
        g = out.get(f"{metric}_gain_vs_grid")
        if g:
            lo, hi = g["ci"]
            out[f"{metric}_tokens_vs_grid"] = ("better" if lo > 0 else "worse" if hi < 0 else "no clear difference") \
                if lo == lo else "undetermined"
    return out


def _examples(store: Any, masks: dict, table: Any, budget: int, layer: int, size: int) -> tuple[list, list, list, list]:
    """The stored example images with their masks and token segments, titled with their scores."""
    scores = table[table["budget"] == budget].set_index("image_id")
    images, gts, segs, names = [], [], [], []
    for shard in store.iter(["id", "index", "example_index", "example_ref", f"cap_attention_argmax_{budget}"]):
        if "example_index" not in shard:
            continue
        pos = {int(i): k for k, i in enumerate(shard["index"])}
        for e, idx in enumerate(shard["example_index"].tolist()):
            image_id = str(shard["id"][pos[idx]])
            if image_id in masks and image_id in scores.index:
                cells = np.rint(shard[f"cap_attention_argmax_{budget}"][pos[idx], layer]).astype(np.int64)
                images.append(shard["example_ref"][e].transpose(1, 2, 0))
                gts.append(masks[image_id])
                segs.append(upsample_labels(cells, size))
                sc = scores.loc[image_id]
                names.append(f"{image_id}: FG-ARI {sc[f'fg_ari_L{layer}']:.2f}, mIoU {sc[f'miou_L{layer}']:.2f}")
    return images, gts, segs, names


# ---------------------------------------------------------------------------- attention-viz
