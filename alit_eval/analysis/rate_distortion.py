"""Rate-distortion: the tokenizer's budgets as bits per image, against JPEG and WebP at the same bits.

Bits of a budget: ``tokens x log2(codebook size)`` for quantised tokenizers, where tokens are the
mean tokens the decoder receives at that budget (`alit_eval.analysis.tokens`; 12 bits per token for
the official releases' 4096 codes; a fixed-length code, no entropy coding), or
``tokens x token_dim x 16`` for continuous tokens stored as fp16 (labelled ``fp16``).

For every image and budget each codec (Pillow) gets the quality 1..100 whose file is closest to the
tokenizer's bits without exceeding them (the search is `alit_eval.analysis.codec_search`). When no
quality fits, the codec cannot reach that budget for that image (``reachable=False``); codec means
are then over the reachable images only (and the tokenizer's over the same images is reported
beside them), and codec rFID is only computed when every image is reachable.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from alit_eval.analysis.codec_search import CURVE_QUALITIES, codec_table, codec_versions
from alit_eval.analysis.quality import PSNR_CAP_DB, summarize
from alit_eval.analysis.skeleton import CommandRun, figure_title
from alit_eval.analysis.stats import bootstrap_mean_ci
from alit_eval.engine.plan import has_features, plan_sweep
from alit_eval.engine.sweep import accumulate, resolve_device
from alit_eval.errors import AlitEvalError
from alit_eval.metrics.feature_distance import FrechetReference
from alit_eval.metrics.inception import InceptionFeatures
from alit_eval.metrics.specs import HEADLINE, PIXEL as PIXEL_METRICS
from alit_eval.results import plots, plots_cost
from alit_eval.results.atomic import write_csv, write_parquet
from alit_eval.results.schema import format_condition, metrics_frame, parse_condition


PIXEL = PIXEL_METRICS  # the pixel metrics of metrics/specs.py


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


def metric_rows(matched: "Any", per_image: "Any", targets: Mapping[int, float], pixels: int, *, dataset: str,
                preprocess: str, seed: int, fid_ref: Any = None, stats: Mapping[tuple[str, int], Any] | None = None,
                fid_condition: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Long-format rows of the codecs (condition ``method=<codec>``) and of the tokenizer on the
    images each codec could fit (``method=tokenizer;subset=<codec>-reachable``, only when partial).

    `fid_ref` is a `FrechetReference` of the originals; codec rFID is written only when every
    image is reachable at that budget (otherwise the set would not be comparable). `fid_condition`
    holds the keys the tokenizer's rFID rows carry (``reference``, ``resize``).
    """
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
            out.append({**base, "budget": int(budget), "metric": "rfid", "value": fid_ref.distance_to(s),
                        "n": int(s.n), "condition": format_condition(method=codec, **(fid_condition or {}))})
    return out


def figure_points(metrics: "Any") -> "Any":
    """The rows the rate-distortion figure draws: method, budget, bpp, metric, value, reachable
    (share of images the method fits into the budget; 1 for the tokenizer)."""
    m = metrics.copy()
    cond = m["condition"].map(parse_condition)
    m["method"] = cond.map(lambda c: c.get("method", ""))
    m = m[(m["method"] != "") & ~cond.map(lambda c: "subset" in c) & m["budget"].notna()]
    bpp = m[m["metric"] == "bpp"].set_index(["method", "budget"])["value"]
    reach = m[m["metric"] == "reachable_share"].set_index(["method", "budget"])["value"]
    keep = m[m["metric"].isin(HEADLINE)].copy()
    keys = list(zip(keep["method"], keep["budget"]))
    return pd.DataFrame({"method": keep["method"], "budget": keep["budget"].astype(int),
                         "bpp": [bpp.get(k, np.nan) for k in keys], "metric": keep["metric"],
                         "value": keep["value"], "reachable": [reach.get(k, 1.0) for k in keys]})


def _targets(budgets: Iterable[int], per_token: float, per_image: Any = None) -> dict[int, float]:
    """Bits per image of each budget: the mean tokens the decoder receives there (`alit_eval.analysis.tokens`;
    the budget itself for families that keep every token) x bits per token."""
    from alit_eval.analysis import tokens as received

    used = received.mean_per_budget(per_image) if per_image is not None and len(per_image) else {}
    return {int(b): float(used.get(b, b)) * per_token for b in budgets}


def _tag(metrics: "Any", **extra: str) -> "Any":
    metrics = metrics.copy()
    metrics["condition"] = [format_condition(**parse_condition(c), **extra) for c in metrics["condition"]]
    return metrics


def run(req: Any, *, from_run: str | None = None, codecs: Sequence[str] = ("jpeg", "webp"), codec_workers: int = 0,
        curve_qualities: Sequence[int] = CURVE_QUALITIES, search: str = "exhaustive",
        bits_per_token_override: float | None = None, seed: int = 0, device: str = "cpu", offline: bool = False,
        results_dir: Any = "results", run_id: str | None = None, overwrite: bool = False, reuse_finished: bool = False,
        progress: bool = True) -> tuple[Any, "Any"]:
    """`alit-eval rate-distortion` end to end; returns ``(run_dir, metrics)``.

    The tokenizer's numbers come from the engine's sweep (run here, or reused with `from_run`); the
    codecs see the same preprocessed images.
    """
    plan = plan_sweep(req, from_run, seed=seed, device=device, offline=offline, progress=progress)
    per_token, rate = _token_rate(plan, bits_per_token_override)
    versions = codec_versions()
    config = {**plan.config, "rate_distortion": {
        "codecs": list(codecs), "search": search, "curve_qualities": [int(q) for q in curve_qualities],
        "bits_per_token": per_token, "rate": rate, **versions}}
    with CommandRun("rate-distortion", config, plan, results_dir=results_dir, run_id=run_id,
                    overwrite=overwrite, reuse_finished=reuse_finished) as run:
        inputs = run.sweep()
        result = inputs.result
        targets = _targets(result.budgets, per_token, result.per_image)
        dataset = inputs.source().dataset
        pixels = _pixels(dataset)
        fid = has_features(result.store, result.budgets)
        inception, ref, fid_cond = _fid_reference(inputs, device, offline) if fid else (None, None, None)
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
        run.dir.write_metrics(metrics)
        run.dir.write_per_image(result.per_image)
        write_parquet(matched, run.dir.file("codecs.parquet"))
        write_csv(curves, run.dir.file("codec_curves.csv"))
        title = figure_title(inputs, "rate-distortion")
        if plots.drawing():
            plots.save(plots_cost.rate_distortion(figure_points(metrics), curves, title=title), run.dir.figures,
                       "rate_distortion")
        reach = matched.groupby(["codec", "budget"])["reachable"].mean()
        run.finish(seed, {
            "rate": {"bits_per_token": per_token, "label": rate, "bits_per_image": targets, "pixels": pixels},
            "codecs": {"names": list(codecs), "search": search, "workers": codec_workers, **versions,
                       "reachable_share": {f"{c}@{b}": float(v) for (c, b), v in reach.items()}},
            "fid_reference": "originals" if fid else None, "n_images": base["n"],
        })
    return run.dir, metrics


def _token_rate(plan: Any, override: float | None) -> tuple[float, str]:
    """Bits per token: the given override, else from the tokenizer's config (`bits_per_token`)."""
    if override is not None:
        return float(override), "given"
    checkpoint = (plan.prepared.checkpoint if plan.prepared is not None else
                  plan.loaded.checkpoint if plan.loaded is not None else None) or {}
    model_cfg = checkpoint.get("config")
    if not model_cfg:
        raise AlitEvalError("cannot tell how many bits a token costs (no tokenizer config recorded); "
                            "pass --bits-per-token")
    if checkpoint.get("family"):  # the family's own rate (runs recorded before families use the config keys)
        from alit_eval.tokenizers.family_queries import bits_from_record

        bits = bits_from_record(checkpoint["family"], model_cfg)
        if bits is not None:
            return bits, f"vq{round(2 ** bits)}"
    return bits_per_token(model_cfg)


def _pixels(dataset: Any) -> int:
    """Pixels per image, from the first image that decodes."""
    first = next((dataset[i]["image"] for i in range(len(dataset)) if dataset[i]["image"] is not None), None)
    if first is None:
        raise AlitEvalError("no image of the dataset can be decoded again for the codecs")
    return int(first.shape[-1] * first.shape[-2])


def _fid_reference(inputs: Any, device: str, offline: bool) -> tuple[Any, Any, dict[str, str]]:
    """The Inception network the sweep used, the originals' Frechet reference, and the FID condition."""
    sweep_cfg = inputs.config
    resize = inputs.result.info.get("inception", {}).get("resize", sweep_cfg.get("fid_resize", "tf1"))
    inception = InceptionFeatures(sweep_cfg.get("inception_weights"), resize, resolve_device(device),
                                  offline=offline)
    st = accumulate(inputs.result.store, ["feat_ref"])["feat_ref"]
    return inception, FrechetReference.of(st), {"reference": "originals", "resize": resize}
