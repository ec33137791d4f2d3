"""Decoder noise as a measured quantity: the between-seed spread of every metric (``--noise-seeds N``).

A tokenizer whose decoder draws random numbers (the family contract's ``random``: FlexTok's flow
noise, ALIT/KARL halting policies) gives different numbers for different seeds. With
``--noise-seeds N`` the sweep runs N times, with seeds ``s, s+1, ..., s+N-1`` (``s`` = ``--seed``).
There is one rollout engine: each repetition is the ordinary sweep (`SweepPlan.execute`) of the
same prepared tokenizer and data with only ``seed`` changed, in its own resumable sub-folder
``<sweep folder>/noise/seed<S>/`` (its own ``config.json`` identity and shards); the first seed is
the command's ordinary sweep, so its numbers are the ones the command reports anyway.

``noise_spread.csv`` (`COLUMNS`, one row per tokenizer x budget x metric):

- ``mean``/``std``/``min``/``max``: of the metric's value over the N seeds (rFID, and the per-image
  means of L1, PSNR, SSIM, MSE, LPIPS as `quality.summarize` computes them); ``std`` is the sample
  standard deviation (ddof = 1): the noise of one run's number.
- ``per_image_std``: per image, the sample std of its value over the seeds, averaged over images
  (NaN for rFID, a set-level metric). PSNR is capped at `quality.PSNR_CAP_DB`, as in the means.
- ``status``: ``measured``, or ``deterministic`` (a decoder without random draws in a `compare`:
  one run, its spread is zero by construction).

`compare` marks a difference between a tokenizer and the reference as within decoder noise when
``|diff| <= 2 * sqrt(std_tokenizer**2 + std_reference**2)`` (`WITHIN_RULE`): the difference of
two single-run numbers whose seed noise is independent, at two standard deviations.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from alit_eval.errors import AlitEvalError

COLUMNS = ["tokenizer", "family", "budget", "metric", "n_seeds", "seeds", "mean", "std", "min", "max",
           "per_image_std", "n_images", "status"]
PER_IMAGE_METRICS = ("l1", "psnr", "ssim", "mse", "lpips")
SPREAD_METRICS = ("rfid", *PER_IMAGE_METRICS)
WITHIN_K = 2.0
WITHIN_RULE = ("within decoder noise: |diff vs reference| <= 2 * sqrt(std_tokenizer^2 + std_reference^2), std = "
               "the between-seed sample std of each tokenizer's number (a deterministic decoder: 0)")
FOLDER = "noise"


def seed_list(seed: int, n: int) -> list[int]:
    """The seeds of ``--noise-seeds n``: ``seed, seed+1, ..., seed+n-1``.

    Raises:
        AlitEvalError: n < 1.
    """
    if int(n) < 1:
        raise AlitEvalError(f"--noise-seeds must be 1 or more; got {n}")
    return [int(seed) + i for i in range(int(n))]


def is_random(tokenizer: Any) -> bool:
    """Whether the tokenizer's family declares random draws (a tokenizer of no family: assumed random)."""
    from alit_eval.tokenizers.family_queries import family_or_none

    fam = family_or_none(tokenizer)
    return fam is None or bool(fam.random)


def check_random(tokenizer: Any, n: int, *, what: str = "this tokenizer") -> None:
    """Refuse ``--noise-seeds n > 1`` for a deterministic decoder (one line).

    Raises:
        AlitEvalError: n > 1 and the family declares no random draws.
    """
    if n > 1 and not is_random(tokenizer):
        from alit_eval.tokenizers.family_queries import family_of

        raise AlitEvalError(f"--noise-seeds {n} does not apply: {what} ({family_of(tokenizer).title}) decodes "
                            "deterministically, so every seed gives the same numbers; drop --noise-seeds")


def reseeded(plan: Any, seed: int) -> Any:
    """The same planned sweep (tokenizer, data, options) with only the seed changed."""
    from alit_eval.engine.plan import SweepPlan

    p = plan.prepared
    if p is None:
        raise AlitEvalError("--noise-seeds needs a fresh sweep (not --from-run); drop one of them")
    config = {**p.config, "seed": int(seed)}
    return SweepPlan(config, prepared=replace(p, sweep=replace(p.sweep, seed=int(seed)), config=config))


def run_seeds(plan: Any, primary: Any, sweep_path: Path, seeds: Sequence[int],
              on_batch: Any = None) -> dict[int, Any]:
    """Run (or resume) the sweep once per extra seed in ``sweep_path/noise/seed<S>/``.

    Args:
        plan: the `SweepPlan` of the first seed (its tokenizer is reused, not reloaded).
        primary: the `SweepInputs` of the first seed (the command's own sweep).
        sweep_path: the folder of the first seed's sweep.
        seeds: all seeds, the first one being ``primary``'s.

    Returns:
        seed -> `SweepInputs`, the first seed included.
    """
    from alit_eval.results.atomic import write_json, write_parquet

    out = {int(seeds[0]): primary}
    for s in seeds[1:]:
        folder = Path(sweep_path) / FOLDER / f"seed{s}"
        again = reseeded(plan, s)
        inputs = again.execute(folder, on_batch=on_batch)
        write_json(again.config, folder / "config.json")  # a reusable sweep folder of its own
        write_parquet(inputs.result.per_image, folder / "per_image.parquet")
        out[int(s)] = inputs
    return out


def seed_values(runs: Mapping[int, Any], *, fid: bool, fid_ref: Any = None) -> pd.DataFrame:
    """The metric value of each seed: columns seed, budget, metric, value (`quality.summarize`'s means, rFID)."""
    from alit_eval.analysis.quality import summarize

    frames = []
    for s, inputs in runs.items():
        m = summarize(inputs.result, command="noise", dataset=inputs.dataset, preprocess=inputs.preprocess, seed=s,
                      fid_ref=fid_ref, fid=fid)
        m = m[m["metric"].isin(SPREAD_METRICS)]
        frames.append(pd.DataFrame({"seed": s, "budget": m["budget"].astype(int), "metric": m["metric"],
                                    "value": m["value"].astype(float)}))
    return pd.concat(frames, ignore_index=True)


def per_image_std(runs: Mapping[int, Any]) -> pd.DataFrame:
    """Per budget and metric: the per-image sample std over seeds, averaged over the images all seeds have."""
    from alit_eval.analysis.quality import PSNR_CAP_DB

    tables = []
    for s, inputs in runs.items():
        t = inputs.result.per_image
        keep = [m for m in PER_IMAGE_METRICS if m in t and not t[m].isna().all()]
        t = t[["image_id", "budget", *keep]].copy()
        if "psnr" in t:
            t["psnr"] = np.minimum(t["psnr"].to_numpy(dtype=np.float64), PSNR_CAP_DB)
        tables.append(t.assign(seed=s))
    long = pd.concat(tables, ignore_index=True).melt(["image_id", "budget", "seed"], var_name="metric").dropna()
    n_seeds = len(runs)
    per = long.groupby(["budget", "metric", "image_id"])["value"].agg(["std", "count"]).reset_index()
    per = per[per["count"] == n_seeds]
    return per.groupby(["budget", "metric"]).agg(per_image_std=("std", "mean"), n_images=("std", "size")).reset_index()


def spread_table(runs: Mapping[int, Any], *, tokenizer: str = "", family: str = "", fid: bool = True,
                 fid_ref: Any = None) -> pd.DataFrame:
    """``noise_spread.csv`` rows of one tokenizer measured with ``len(runs)`` >= 2 seeds (`COLUMNS`)."""
    values = seed_values(runs, fid=fid, fid_ref=fid_ref)
    per = per_image_std(runs).set_index(["budget", "metric"])
    seeds = ",".join(str(s) for s in runs)
    rows = []
    for (budget, metric), g in values.groupby(["budget", "metric"], sort=False):
        v = g["value"].to_numpy(dtype=np.float64)
        hit = per.loc[(budget, metric)] if (budget, metric) in per.index else None
        rows.append({"tokenizer": tokenizer, "family": family, "budget": int(budget), "metric": metric,
                     "n_seeds": len(v), "seeds": seeds, "mean": float(v.mean()),
                     "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "min": float(v.min()), "max": float(v.max()),
                     "per_image_std": float(hit["per_image_std"]) if hit is not None else float("nan"),
                     "n_images": int(hit["n_images"]) if hit is not None else len(runs[next(iter(runs))].result
                                                                                  .per_image["image_id"].unique()),
                     "status": "measured"})
    return _ordered(pd.DataFrame(rows, columns=COLUMNS))


def deterministic_rows(inputs: Any, *, tokenizer: str, family: str, seed: int, fid: bool,
                       fid_ref: Any = None) -> pd.DataFrame:
    """Rows for a deterministic decoder in a comparison: one run, spread zero by construction."""
    values = seed_values({seed: inputs}, fid=fid, fid_ref=fid_ref)
    n_img = len(inputs.result.per_image["image_id"].unique())
    rows = [{"tokenizer": tokenizer, "family": family, "budget": int(r.budget), "metric": r.metric, "n_seeds": 1,
             "seeds": str(seed), "mean": float(r.value), "std": 0.0, "min": float(r.value), "max": float(r.value),
             "per_image_std": float("nan") if r.metric == "rfid" else 0.0, "n_images": n_img,
             "status": "deterministic"} for r in values.itertuples()]
    return _ordered(pd.DataFrame(rows, columns=COLUMNS))


def compare_spread(plans: Mapping[str, Any], inputs: Mapping[str, Any], sweeps: Path, seeds: Sequence[int],
                   families: Mapping[str, str], fid: Mapping[str, bool]) -> pd.DataFrame:
    """`compare`'s ``noise_spread.csv``: every random tokenizer swept once per seed in
    ``sweeps/<label>/noise/seed<S>/``; a deterministic one is one run (`deterministic_rows`)."""
    frames = []
    for name, plan in plans.items():
        if is_random(plan.prepared.tokenizer):
            runs = run_seeds(plan, inputs[name], Path(sweeps) / name, seeds)
            frames.append(spread_table(runs, tokenizer=name, family=families[name], fid=fid[name]))
        else:
            frames.append(deterministic_rows(inputs[name], tokenizer=name, family=families[name], seed=seeds[0],
                                             fid=fid[name]))
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def check_any_random(plans: Mapping[str, Any], n: int) -> None:
    """Refuse ``--noise-seeds n > 1`` in a comparison whose decoders are all deterministic (one line)."""
    if n > 1 and not any(is_random(p.prepared.tokenizer) for p in plans.values()):
        raise AlitEvalError(f"--noise-seeds {n} does not apply: every tokenizer of this comparison decodes "
                            "deterministically; drop --noise-seeds")


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(SPREAD_METRICS)}
    key = df["metric"].map(lambda m: order.get(m, len(order)))
    return df.assign(_k=key).sort_values(["tokenizer", "budget", "_k"], kind="stable").drop(columns="_k") \
        .reset_index(drop=True)[COLUMNS]


def flag_within(table: pd.DataFrame, spread: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Add to `compare`'s tidy table: ``noise_std`` (this tokenizer's between-seed std), ``diff_vs_ref``,
    ``noise_band`` (`WITHIN_RULE`'s bound) and ``within_noise`` (True/False; empty where either number
    is absent or unmeasured)."""
    std = spread.set_index(["tokenizer", "budget", "metric"])["std"]
    value = table.set_index(["tokenizer", "budget", "metric"])["value"]
    out = table.copy()
    noise, diffs, bands, within = [], [], [], []
    for r in table.itertuples():
        s = std.get((r.tokenizer, r.budget, r.metric), float("nan"))
        s_ref = std.get((reference, r.budget, r.metric), float("nan"))
        ref = value.get((reference, r.budget, r.metric), float("nan"))
        d = float(r.value) - float(ref) if r.tokenizer != reference else float("nan")
        band = WITHIN_K * math.sqrt(s * s + s_ref * s_ref)
        noise.append(s)
        diffs.append(d)
        bands.append(band if r.tokenizer != reference else float("nan"))
        within.append("" if math.isnan(d) or math.isnan(band) else bool(abs(d) <= band))
    return out.assign(noise_std=noise, diff_vs_ref=diffs, noise_band=bands, within_noise=within)


def within_lines(table: pd.DataFrame, n_seeds: int) -> list[str]:
    """Console note: which differences from the reference are within decoder noise."""
    if "within_noise" not in table:
        return []
    hit = table[table["within_noise"].astype(str) == "True"]
    if not len(hit):
        return [f"decoder noise ({n_seeds} seeds): every measured difference from the reference exceeds its noise band"]
    parts = [f"{r.tokenizer} {r.metric}@{int(r.budget)} ({r.diff_vs_ref:+.4g}, band {r.noise_band:.3g})"
             for r in hit.itertuples()]
    more = f" ... (+{len(parts) - 12})" if len(parts) > 12 else ""
    return [f"within decoder noise ({n_seeds} seeds, 2 sigma; not a difference): " + "; ".join(parts[:12]) + more]


def meta(seeds: Sequence[int], folders: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``noise_seeds`` entry of meta.json."""
    return {"n": len(seeds), "seeds": list(seeds), "folders": f"<sweep>/{FOLDER}/seed<S> (the first seed: the sweep "
            "itself)", "std": "sample std over seeds (ddof 1)", "rule": WITHIN_RULE, **(folders or {})}


def print_spread(spread: pd.DataFrame) -> None:
    """Console table: budget x metric, mean +- std over seeds (per-image std)."""
    from rich.console import Console
    from rich.table import Table

    if not len(spread):
        return
    n = int(spread["n_seeds"].max())
    out = Table(title=f"decoder noise: spread over {n} seeds (mean ± std over seeds; mean per-image std)")
    for c in ("tokenizer", "tokens", "metric", "mean ± std", "per-image std", "status"):
        out.add_column(c, justify="right")
    for r in spread.itertuples():
        pis = "" if math.isnan(r.per_image_std) else f"{r.per_image_std:.4g}"
        name = r.tokenizer if isinstance(r.tokenizer, str) and r.tokenizer else "-"
        out.add_row(name, str(r.budget), r.metric, f"{r.mean:.4g} ± {r.std:.2g}", pis, r.status)
    Console().print(out)
