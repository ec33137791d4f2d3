"""Codecs at a bit budget (a primitive of `alit-eval rate-distortion`): JPEG and WebP via Pillow.

For every image and target size each codec gets the quality 1..100 whose file is closest to the
target without exceeding it; the size counted is the whole file, headers included. The default
search encodes all 100 qualities once per image (file size is not monotonic in quality, so only the
exhaustive search is exact); ``binary`` assumes monotonic sizes and encodes ~7 qualities per target.
Work runs per image in worker processes; each image's result depends on nothing else and Inception
features are accumulated in the main process in fixed chunks in index order, so results do not
depend on the number of workers.
"""

from __future__ import annotations

import io
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import PIL
import pandas as pd
import torch
from PIL import Image, features

from alit_eval.analysis.quality import PSNR_CAP_DB
from alit_eval.errors import AlitEvalError
from alit_eval.metrics.feature_distance import FeatureStats
from alit_eval.metrics.pixel import pixel_metrics
from alit_eval.metrics.specs import PIXEL

# name -> (Pillow format, save options). JPEG: baseline, 4:2:0, optimised Huffman tables (smaller
# files, same pixels); WebP: lossy, Pillow's default effort (method 4).
CODECS: dict[str, tuple[str, dict[str, Any]]] = {
    "jpeg": ("JPEG", {"optimize": True}),
    "webp": ("WEBP", {"method": 4}),
}
QUALITIES = tuple(range(1, 101))
CURVE_QUALITIES = (1, 2, 5, 10, 20, 30, 50, 75, 90, 95)
SEARCHES = ("exhaustive", "binary")
CHUNK = 32  # images per worker round and per Inception update: fixed, so results never depend on workers


def encode(image: np.ndarray, codec: str, quality: int) -> bytes:
    """Compress a uint8 ``[H, W, 3]`` RGB image with `codec` at `quality` (1..100); return the file."""
    fmt, options = CODECS[codec]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, quality=int(quality), **options)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Decode a compressed file to a uint8 ``[H, W, 3]`` RGB array."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def best_quality(sizes_bits: Mapping[int, int], target_bits: float) -> int | None:
    """The quality whose size is largest without exceeding `target_bits` (ties: the higher quality).

    Args:
        sizes_bits: quality -> file size in bits.
        target_bits: the budget.

    Returns:
        The quality, or None when no quality fits (the codec cannot reach the budget).
    """
    fits = [(s, q) for q, s in sizes_bits.items() if s <= target_bits]
    return max(fits)[1] if fits else None


def binary_quality(size_of: Any, target_bits: float, lo: int = 1, hi: int = 100) -> int | None:
    """Largest quality with ``size_of(q) <= target_bits``, assuming sizes grow with quality."""
    if size_of(lo) > target_bits:
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if size_of(mid) <= target_bits:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class CodecJob:
    """One image's codec work (picklable, for worker processes)."""

    index: int
    image_id: str
    image: np.ndarray  # uint8 [H, W, 3]
    targets: tuple[tuple[int, float], ...]  # (budget, bits)
    codecs: tuple[str, ...]
    curve_qualities: tuple[int, ...]
    search: str = "exhaustive"
    keep_pixels: bool = False


def _metrics(recons: list[np.ndarray], ref: np.ndarray) -> list[dict[str, float]]:
    if not recons:
        return []
    r = torch.from_numpy(np.stack(recons)).permute(0, 3, 1, 2).contiguous()
    g = torch.from_numpy(ref).permute(2, 0, 1).unsqueeze(0).expand_as(r).contiguous()
    m = {k: v.numpy() for k, v in pixel_metrics(r, g).items()}
    return [{k: float(m[k][i]) for k in PIXEL} for i in range(len(recons))]


def codec_job(job: CodecJob) -> dict[str, Any]:
    """Match every budget with every codec for one image; also the image's quality-sweep points.

    Returns:
        ``{"rows": [...], "curve": [...], "pixels": {(codec, budget): uint8 [H, W, 3]}}``; rows hold
        image_id, index, codec, budget, target_bits, reachable, quality, bits, bpp and the pixel
        metrics (NaN when unreachable); pixels only with ``keep_pixels`` and for reachable budgets.
    """
    h, w = job.image.shape[:2]
    rows, curve, pixels = [], [], {}
    for codec in job.codecs:
        cache: dict[int, bytes] = {}

        def file_of(q: int) -> bytes:
            if q not in cache:
                cache[q] = encode(job.image, codec, q)
            return cache[q]

        def size_of(q: int) -> int:
            return 8 * len(file_of(q))

        if job.search == "exhaustive" and any(t >= size_of(1) for _, t in job.targets):
            sizes = {q: size_of(q) for q in QUALITIES}
        else:
            sizes = {1: size_of(1)}  # quality 1 already exceeds every budget: nothing can fit
        chosen: list[tuple[int, float, int | None]] = []
        for budget, target in job.targets:
            q = best_quality(sizes, target) if job.search == "exhaustive" else binary_quality(size_of, target)
            chosen.append((budget, target, q))
        decoded = {q: decode(file_of(q)) for _, _, q in chosen if q is not None}
        measured = dict(zip(decoded, _metrics(list(decoded.values()), job.image)))
        for budget, target, q in chosen:
            row = {"image_id": job.image_id, "index": job.index, "codec": codec, "budget": budget,
                   "target_bits": target, "reachable": q is not None, "quality": q,
                   "bits": size_of(q) if q is not None else None}
            row["bpp"] = row["bits"] / (h * w) if q is not None else math.nan
            row.update(measured[q] if q is not None else dict.fromkeys(PIXEL, math.nan))
            rows.append(row)
            if job.keep_pixels and q is not None:
                pixels[(codec, budget)] = decoded[q]
        points = _metrics([decode(file_of(q)) for q in job.curve_qualities], job.image)
        for q, m in zip(job.curve_qualities, points):
            curve.append({"image_id": job.image_id, "codec": codec, "quality": q, "bpp": size_of(q) / (h * w), **m})
    return {"rows": rows, "curve": curve, "pixels": pixels}


def _init_worker() -> None:
    torch.set_num_threads(1)  # workers run in parallel already; nested threads only thrash


def codec_table(dataset: Any, targets: Mapping[int, float], *, codecs: Sequence[str] = ("jpeg", "webp"),
                workers: int = 0, curve_qualities: Sequence[int] = CURVE_QUALITIES, search: str = "exhaustive",
                inception: Any = None, progress: bool = False) -> tuple["Any", "Any", dict[tuple[str, int], Any]]:
    """Codec reconstructions at the tokenizer's bits for every image of `dataset`.

    Args:
        dataset: a Source dataset (items ``{"index", "id", "image": uint8 [3, S, S] or None}``), the
            preprocessed images the tokenizer saw.
        targets: budget -> bits per image.
        codecs: names from `CODECS`.
        workers: worker processes (0: in this process).
        curve_qualities: qualities of each codec's own rate-distortion curve.
        search: ``exhaustive`` (exact) or ``binary`` (assumes sizes grow with quality).
        inception: an `InceptionFeatures` to accumulate FID statistics of the codec images, or None.

    Returns:
        ``(matched, curves, stats)``: one row per image, codec and budget; one row per codec and
        quality (means over images; PSNR capped at 100 dB like the sweep tables); and
        ``(codec, budget) -> FeatureStats`` over the reachable images (empty without `inception`).

    Over 60 lines: the job fan-out (in process or a pool) and the collection of its three outputs
    stay together so the image order, and so every number, does not depend on the worker count.
    """
    bad = [c for c in codecs if c not in CODECS]
    if bad or not codecs:
        raise AlitEvalError(f"--codecs {','.join(codecs)}: choose from {', '.join(CODECS)}")
    if search not in SEARCHES:
        raise AlitEvalError(f"--search {search}: choose from {', '.join(SEARCHES)}")
    bad_q = [q for q in curve_qualities if not 1 <= int(q) <= 100]
    if bad_q:
        raise AlitEvalError(f"codec qualities must lie in 1..100; got {bad_q}")
    tgt = tuple(sorted((int(b), float(t)) for b, t in targets.items()))
    rows: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    stats: dict[tuple[str, int], FeatureStats] = {}
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) if workers > 0 else None
    try:
        for start in range(0, len(dataset), CHUNK):
            jobs = []
            for i in range(start, min(start + CHUNK, len(dataset))):
                item = dataset[i]
                if item["image"] is None:
                    continue  # undecodable: the sweep skipped it too
                image = item["image"].permute(1, 2, 0).contiguous().numpy()
                jobs.append(CodecJob(int(item["index"]), str(item["id"]), image, tgt, tuple(codecs),
                                     tuple(int(q) for q in curve_qualities), search, inception is not None))
            results = list(pool.map(codec_job, jobs)) if pool else [codec_job(j) for j in jobs]
            for res in results:
                rows += res["rows"]
                curve += res["curve"]
            if inception is not None:
                for codec in codecs:
                    for budget, _ in tgt:
                        imgs = [r["pixels"][(codec, budget)] for r in results if (codec, budget) in r["pixels"]]
                        if imgs:
                            x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
                            stats.setdefault((codec, budget), FeatureStats(2048)).update(inception(x).cpu())
    finally:
        if pool is not None:
            pool.shutdown()
    matched = pd.DataFrame(rows, columns=["image_id", "index", "codec", "budget", "target_bits", "reachable",
                                          "quality", "bits", "bpp", *PIXEL])
    for col in ("quality", "bits"):
        matched[col] = pd.array(matched[col].to_numpy(dtype=object), dtype="Int64")
    per = pd.DataFrame(curve, columns=["image_id", "codec", "quality", "bpp", *PIXEL])
    per["psnr"] = per["psnr"].clip(upper=PSNR_CAP_DB)
    curves = per.groupby(["codec", "quality"], sort=True).agg(
        bpp=("bpp", "mean"), l1=("l1", "mean"), mse=("mse", "mean"), psnr=("psnr", "mean"), ssim=("ssim", "mean"),
        n=("image_id", "size")).reset_index()
    return matched, curves, stats


def codec_versions() -> dict[str, str | None]:
    """Pillow and codec library versions (they change the files, so they are recorded)."""
    return {"pillow": PIL.__version__, "libjpeg": features.version("jpg"), "libwebp": features.version("webp")}
