"""Rate-distortion: the tokenizer's budgets as bits per image, against JPEG and WebP at the same bits.

Bits of a budget: ``tokens x log2(codebook size)`` for quantised tokenizers (12 bits per token for
the official releases' 4096 codes; a fixed-length code, no entropy coding), or
``tokens x token_dim x 16`` for continuous tokens stored as fp16 (labelled ``fp16``).

For every image and budget each codec (Pillow) gets the quality 1..100 whose file is closest to the
tokenizer's bits without exceeding them; the size counted is the whole file, headers included,
as a user would store it. The default search encodes all 100 qualities once per image (file size
is not monotonic in quality, so only the exhaustive search is exact) and serves every budget from
those sizes; ``binary`` assumes monotonic sizes and encodes ~7 qualities per budget. When no quality
fits, the codec cannot reach that budget for that image (``reachable=False``); codec means are then
over the reachable images only (and the tokenizer's over the same images is reported beside them),
and codec rFID is only computed when every image is reachable.

Codec work runs per image in worker processes (`concurrent.futures.ProcessPoolExecutor`); each
image's result depends on nothing else, and Inception features are accumulated in the main process
in fixed chunks of images in index order, so results do not depend on the number of workers.
"""

from __future__ import annotations

import io
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from alit_eval.errors import AlitEvalError

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
PIXEL = ("l1", "mse", "psnr", "ssim")


def bits_per_token(model_config: Mapping[str, Any]) -> tuple[float, str]:
    """Bits one 1D token costs, and how that was counted.

    Args:
        model_config: the ALIT config as a dict (``quantize``, ``codebook_size``, ``token_dim``).

    Returns:
        ``(bits, label)``: ``log2(codebook_size)`` and ``vq<K>`` for quantised tokens,
        ``16 * token_dim`` and ``fp16`` for continuous ones.
    """
    try:
        if model_config["quantize"]:
            k = int(model_config["codebook_size"])
            return math.log2(k), f"vq{k}"
        return 16.0 * int(model_config["token_dim"]), "fp16"
    except KeyError as exc:
        raise AlitEvalError(f"the tokenizer config has no {exc.args[0]!r}; pass --bits-per-token") from None


def encode(image: np.ndarray, codec: str, quality: int) -> bytes:
    """Compress a uint8 ``[H, W, 3]`` RGB image with `codec` at `quality` (1..100); return the file."""
    from PIL import Image

    fmt, options = CODECS[codec]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, quality=int(quality), **options)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Decode a compressed file to a uint8 ``[H, W, 3]`` RGB array."""
    from PIL import Image

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
    import torch

    from alit_eval.metrics.pixel import pixel_metrics

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
    import torch

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
    """
    import pandas as pd
    import torch

    from alit_eval.analysis.reconstruction import PSNR_CAP_DB
    from alit_eval.metrics.fid import FeatureStats

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
    import PIL
    from PIL import features

    return {"pillow": PIL.__version__, "libjpeg": features.version("jpg"), "libwebp": features.version("webp")}


def metric_rows(matched: "Any", per_image: "Any", targets: Mapping[int, float], pixels: int, *, dataset: str,
                preprocess: str, seed: int, fid_ref: Any = None, stats: Mapping[tuple[str, int], Any] | None = None,
                fid_condition: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Long-format rows of the codecs (condition ``method=<codec>``) and of the tokenizer on the
    images each codec could fit (``method=tokenizer;subset=<codec>-reachable``, only when partial).

    `fid_ref` is a `FrechetReference` of the originals; codec rFID is written only when every
    image is reachable at that budget (otherwise the set would not be comparable). `fid_condition`
    holds the keys the tokenizer's rFID rows carry (``reference``, ``resize``).
    """
    from alit_eval.analysis.reconstruction import PSNR_CAP_DB
    from alit_eval.analysis.stats import bootstrap_mean_ci
    from alit_eval.results.schema import format_condition

    base = {"command": "rate-distortion", "dataset": dataset, "preprocess": preprocess}
    n_all = int(per_image["image_id"].nunique())
    out: list[dict[str, Any]] = []

    def mean_rows(values: dict[str, np.ndarray], budget: int, cond: str) -> None:
        for m, v in values.items():
            v = v.astype(np.float64)
            if m == "psnr":
                v = np.minimum(v, PSNR_CAP_DB)
            lo, hi = bootstrap_mean_ci(v, seed=seed) if m in PIXEL else (None, None)
            out.append({**base, "budget": budget, "metric": m, "value": float(np.mean(v)), "n": int(v.size),
                        "ci_low": lo, "ci_high": hi, "condition": cond})

    for (codec, budget), g in matched.groupby(["codec", "budget"], sort=True):
        cond = format_condition(method=codec)
        ok = g[g["reachable"].astype(bool)]
        out.append({**base, "budget": int(budget), "metric": "reachable_share", "value": len(ok) / max(len(g), 1),
                    "n": len(g), "condition": cond})
        out.append({**base, "budget": int(budget), "metric": "bits_target", "value": float(targets[int(budget)]),
                    "n": len(g), "condition": cond})
        if len(ok):
            mean_rows({m: ok[m].to_numpy() for m in PIXEL}, int(budget), cond)
            mean_rows({"bits": ok["bits"].to_numpy(dtype=np.float64), "bpp": ok["bpp"].to_numpy(),
                       "quality": ok["quality"].to_numpy(dtype=np.float64)}, int(budget), cond)
            if len(ok) < n_all:
                tok = per_image[(per_image["budget"] == budget) & per_image["image_id"].isin(set(ok["image_id"]))]
                mean_rows({m: tok[m].to_numpy() for m in PIXEL if m in tok}, int(budget),
                          format_condition(method="tokenizer", subset=f"{codec}-reachable"))
        s = (stats or {}).get((codec, int(budget)))
        if fid_ref is not None and s is not None and len(ok) == n_all:
            out.append({**base, "budget": int(budget), "metric": "rfid", "value": fid_ref.distance(s.mean(), s.cov()),
                        "n": int(s.n), "condition": format_condition(method=codec, **(fid_condition or {}))})
    return out


def figure_points(metrics: "Any") -> "Any":
    """The rows the rate-distortion figure draws: method, budget, bpp, metric, value, reachable
    (share of images the method fits into the budget; 1 for the tokenizer)."""
    import pandas as pd

    from alit_eval.results.schema import parse_condition

    m = metrics.copy()
    cond = m["condition"].map(parse_condition)
    m["method"] = cond.map(lambda c: c.get("method", ""))
    m = m[(m["method"] != "") & ~cond.map(lambda c: "subset" in c) & m["budget"].notna()]
    bpp = m[m["metric"] == "bpp"].set_index(["method", "budget"])["value"]
    reach = m[m["metric"] == "reachable_share"].set_index(["method", "budget"])["value"]
    keep = m[m["metric"].isin(["l1", "psnr", "ssim", "rfid", "lpips"])].copy()
    keys = list(zip(keep["method"], keep["budget"]))
    return pd.DataFrame({"method": keep["method"], "budget": keep["budget"].astype(int),
                         "bpp": [bpp.get(k, np.nan) for k in keys], "metric": keep["metric"],
                         "value": keep["value"], "reachable": [reach.get(k, 1.0) for k in keys]})


def _targets(budgets: Iterable[int], per_token: float) -> dict[int, float]:
    return {int(b): float(b) * per_token for b in budgets}


def _tag(metrics: "Any", **extra: str) -> "Any":
    from alit_eval.results.schema import format_condition, parse_condition

    metrics = metrics.copy()
    metrics["condition"] = [format_condition(**parse_condition(c), **extra) for c in metrics["condition"]]
    return metrics


def run(req: Any, *, from_run: str | None = None, codecs: Sequence[str] = ("jpeg", "webp"), codec_workers: int = 0,
        curve_qualities: Sequence[int] = CURVE_QUALITIES, search: str = "exhaustive",
        bits_per_token_override: float | None = None, seed: int = 0, device: str = "cpu", offline: bool = False,
        results_dir: Any = "results", run_id: str | None = None, overwrite: bool = False,
        progress: bool = True) -> tuple[Any, "Any"]:
    """`alit-eval rate-distortion` end to end; returns ``(run_dir, metrics)``.

    The tokenizer's numbers come from the engine's sweep (run here, or reused with `from_run`); the
    codecs see the same preprocessed images.
    """
    import pandas as pd

    from alit_eval.analysis.reconstruction import summarize
    from alit_eval.engine.reuse import has_features, plan_sweep
    from alit_eval.engine.sweep import accumulate, resolve_device
    from alit_eval.metrics.fid import FrechetReference
    from alit_eval.results import plots, plots_cost
    from alit_eval.results.io import open_run, write_csv, write_parquet
    from alit_eval.results.schema import format_condition, metrics_frame

    plan = plan_sweep(req, from_run, seed=seed, device=device, offline=offline, progress=progress)
    if bits_per_token_override is not None:
        per_token, rate = float(bits_per_token_override), "given"
    else:
        model_cfg = (plan.prepared.tokenizer.cfg.to_dict() if plan.prepared is not None and
                     hasattr(plan.prepared.tokenizer, "cfg") else (plan.loaded.checkpoint.get("config")
                                                                  if plan.loaded is not None else None))
        if not model_cfg:
            raise AlitEvalError("cannot tell how many bits a token costs (no tokenizer config recorded); "
                                "pass --bits-per-token")
        per_token, rate = bits_per_token(model_cfg)
    versions = codec_versions()
    config = {**plan.config, "rate_distortion": {
        "codecs": list(codecs), "search": search, "curve_qualities": [int(q) for q in curve_qualities],
        "bits_per_token": per_token, "rate": rate, **versions}}
    run_dir = open_run(results_dir, "rate-distortion", run_id=run_id, config=config, overwrite=overwrite)
    try:
        inputs = plan.execute(run_dir.path)
        result = inputs.result
        targets = _targets(result.budgets, per_token)
        dataset = inputs.source().dataset
        first = next((dataset[i]["image"] for i in range(len(dataset)) if dataset[i]["image"] is not None), None)
        if first is None:
            raise AlitEvalError("no image of the dataset can be decoded again for the codecs")
        pixels = int(first.shape[-1] * first.shape[-2])
        fid = has_features(result.store, result.budgets)
        inception, ref, fid_cond = None, None, None
        if fid:
            from alit_eval.metrics.inception import InceptionFeatures

            sweep_cfg = inputs.config
            resize = result.info.get("inception", {}).get("resize", sweep_cfg.get("fid_resize", "tf1"))
            inception = InceptionFeatures(sweep_cfg.get("inception_weights"), resize, resolve_device(device),
                                          offline=offline)
            st = accumulate(result.store, ["feat_ref"])["feat_ref"]
            ref = FrechetReference(st.mean(), st.cov())
            fid_cond = {"reference": "originals", "resize": resize}
        matched, curves, stats = codec_table(dataset, targets, codecs=codecs, workers=codec_workers,
                                             curve_qualities=curve_qualities, search=search, inception=inception)
        tok = _tag(summarize(result, command="rate-distortion", dataset=inputs.dataset, preprocess=inputs.preprocess,
                             seed=seed, fid=fid), method="tokenizer")
        base = {"command": "rate-distortion", "dataset": inputs.dataset, "preprocess": inputs.preprocess,
                "n": int(result.per_image["image_id"].nunique())}
        rate_rows = []
        for b, bits in targets.items():
            cond = format_condition(method="tokenizer", rate=rate)
            rate_rows += [{**base, "budget": b, "metric": "bits", "value": bits, "condition": cond},
                          {**base, "budget": b, "metric": "bpp", "value": bits / pixels, "condition": cond}]
        codec_rows = metric_rows(matched, result.per_image, targets, pixels, dataset=inputs.dataset,
                                 preprocess=inputs.preprocess, seed=seed, fid_ref=ref, stats=stats,
                                 fid_condition=fid_cond)
        metrics = pd.concat([tok, metrics_frame(rate_rows + codec_rows)], ignore_index=True)
        run_dir.write_metrics(metrics)
        run_dir.write_per_image(result.per_image)
        write_parquet(matched, run_dir.file("codecs.parquet"))
        write_csv(curves, run_dir.file("codec_curves.csv"))
        plots.save(plots_cost.rate_distortion(figure_points(metrics), curves), run_dir.figures, "rate_distortion")
        reach = matched.groupby(["codec", "budget"])["reachable"].mean()
        run_dir.finish(seed=seed, device=result.info.get("device"), extra={
            "checkpoint": inputs.checkpoint, "dataset": {"name": inputs.dataset, **inputs.config.get("data", {})},
            "preprocess": inputs.preprocess, "from_run": inputs.from_run, "rollout_calls": result.rollout_calls,
            "rate": {"bits_per_token": per_token, "label": rate, "bits_per_image": targets, "pixels": pixels},
            "codecs": {"names": list(codecs), "search": search, "workers": codec_workers, **versions,
                       "reachable_share": {f"{c}@{b}": float(v) for (c, b), v in reach.items()}},
            "fid_reference": "originals" if fid else None, "inception": result.info.get("inception"),
            "lpips": result.info.get("lpips"), "halting": result.info.get("halting"),
            "skipped_images": [{"id": i, "error": e} for i, e in result.failed],
            "n_images": base["n"],
        })
    finally:
        run_dir.release()
    return run_dir, metrics
