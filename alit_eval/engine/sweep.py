"""The one loop over data x budgets that every command uses.

For a dataset and a set of budgets it streams batches through ``tokenizer.rollout`` (one rollout per
batch, stopping at the largest budget), quantises reconstructions to uint8, computes per-image
metrics and Inception features of the originals and of every budget's reconstructions, and writes
each batch to the shard store, which a rerun resumes from. Analyses consume the resulting per-image
table and streaming feature statistics; they never loop over images themselves.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from alit_eval.data.datasets import collate
from alit_eval.data.sources import Source
from alit_eval.engine import fastpath
from alit_eval.engine.config import SweepConfig
from alit_eval.engine.device import resolve_device  # noqa: F401 (also imported from here by callers)
from alit_eval.engine.distributed import DistInfo, barrier, my_batches
from alit_eval.engine.identity import identify, identity_arrays, verify_resume
from alit_eval.engine.store import ShardStore
from alit_eval.errors import AlitEvalError, DataError
from alit_eval.metrics.feature_distance import FeatureStats
from alit_eval.metrics.measures import Measure, Meter, active_measures, feature_keys, per_image_columns
from alit_eval.metrics.pixel import to_uint8
from alit_eval.metrics.specs import PIXEL, RAW
from alit_eval.tokenizers.family_options import start_global_stream, top_level_names, uses_global_stream
from alit_eval.tokenizers.family_queries import attention_for, family_or_none, inference_kwargs, tokens_used
from alit_eval.tokenizers.generators import per_image_generators

log = logging.getLogger(__name__)

PIXEL_METRICS = PIXEL  # declared in metrics/specs.py
RAW_METRICS = RAW  # the raw float reconstruction's L1 (the official encode() criterion's error)
# LPIPS, the 2D positions masked by halting between iterations, and the tokens the model kept at
# each budget (fewer than the budget where the model drops slots itself; `family_queries.tokens_used`).
OTHER_COLUMNS = ("lpips", "halted_2d", "tokens_used")

# Extra per-image arrays an analysis can ask the sweep to keep, per budget: name -> function of the
# budget's `BudgetOutput` returning ``[B, ...]``. Stored in the shards as ``cap_<name>_<budget>``.
CAPTURES: dict[str, Callable[[Any], torch.Tensor]] = {
    "latent_mean": lambda out: out.latent.mean(dim=1),
    "tokens_mean": lambda out: out.tokens.mean(dim=1),
    "tokens": lambda out: out.tokens.flatten(1),
    "indices": lambda out: out.indices if out.indices is not None else torch.zeros(len(out.latent), 0),
    "attention": lambda out: out.attention,
    "attention_argmax": lambda out: out.attention.argmax(dim=2).to(torch.int16),  # [B, layers, gh, gw] token ids
    "enc2d_mean": lambda out: out.extras["enc2d_mean"],  # set by analysis.probe.FeatureTap
    "latent_first_mean": lambda out: out.extras["latent_first_mean"],  # set by analysis.probe.FeatureTap
    "base2d_mean": lambda out: out.extras["base2d_mean"],  # set by analysis.probe.FeatureTap
    "recon_latent_mean": lambda out: out.extras["recon_latent_mean"],  # set by analysis.probe.FeatureTap
}


@dataclass
class SweepResult:
    """What analyses get from a sweep."""

    store: ShardStore
    budgets: list[int]
    per_image: Any  # pandas DataFrame, one row per image and budget
    failed: list[tuple[str, str]]
    info: dict[str, Any] = field(default_factory=dict)
    rollout_calls: int = 0

    def feature_stats(self, key: str | int) -> FeatureStats:
        """Streaming float64 statistics of the Inception features of ``"ref"`` or a budget."""
        return accumulate(self.store, [f"feat_{key}"])[f"feat_{key}"]


def accumulate(store: ShardStore, keys: list[str]) -> dict[str, FeatureStats]:
    """Feature statistics for `keys`, one shard at a time in index order (deterministic)."""
    stats: dict[str, FeatureStats] = {}
    for shard in store.iter(keys):
        for key in keys:
            if key in shard and len(shard[key]):
                stats.setdefault(key, FeatureStats(shard[key].shape[1])).update(torch.from_numpy(shard[key]))
    missing = [k for k in keys if k not in stats]
    if missing:
        raise AlitEvalError(f"no Inception features stored for {missing}; was the sweep run with FID off?")
    return stats


class _Measures:
    """The registered measures this sweep computes (`alit_eval.metrics.measures`), opened once."""

    def __init__(self, cfg: SweepConfig, device: torch.device) -> None:
        self.meters: list[tuple[Measure, Meter]] = []
        self.info: dict[str, Any] = {}
        for measure in active_measures(cfg):
            meter, info = measure.open(cfg, device)
            if measure.info_key:
                self.info[measure.info_key] = info
            if meter is None:
                continue
            if getattr(meter, "net", None) is not None and measure.feature_key:  # a feature network: speed only
                meter.net = fastpath.channels_last(meter.net, device)
                if cfg.compile:
                    meter.net = torch.compile(meter.net)
            self.meters.append((measure, meter))

    @property
    def featured(self) -> list[tuple[Measure, Meter]]:
        """The measures that store features of the originals and every budget."""
        return [(m, meter) for m, meter in self.meters if m.feature_key]


def run_sweep(tokenizer: Any, source: Source, cfg: SweepConfig, run_path: Any, *,
              on_batch: Callable[[int], None] | None = None, dist: DistInfo | None = None) -> SweepResult | None:
    """Run (or resume) the sweep of `tokenizer` over `source` at `cfg.budgets`.

    Args:
        tokenizer: an `AdaptiveTokenizer`, or None with no budgets for a reference-only sweep.
        source: the dataset (`alit_eval.data.sources.open_source`).
        cfg: sweep options.
        run_path: the run folder; shards go to ``<run_path>/shards``.
        on_batch: called with the number of images after each batch (tests use it to interrupt).
        dist: the process group under torchrun (`alit_eval.engine.distributed`); ranks other than 0
            return None once their batches are stored.

    Kept as one function (over 60 lines) on purpose: the order of its steps (read ``done`` before
    any rank writes, seed or restore the official RNG stream, write each batch before the next)
    is what makes a resumed or distributed sweep identical to a single run, and reads best in one place.
    """

    dist = dist or DistInfo()
    device = resolve_device(cfg.device)
    budgets = sorted(cfg.budgets)
    fam = family_or_none(tokenizer) if tokenizer is not None else None
    global_stream = uses_global_stream(cfg.options)
    if dist.active and global_stream:
        given = ", ".join(f"--{k} {v}" for k, v in cfg.options.items() if v is not None)
        raise AlitEvalError(f"an official global-stream policy ({given}) needs a single process; use the family's "
                            "default (per-image generators) with torchrun")
    store = ShardStore(run_path)
    if dist.main:  # never reuse a damaged shard or the numbers of an image that changed since
        verify_resume(store, source.dataset, official_stream=global_stream)
    barrier(dist)
    done = store.done()
    # Every rank must read the same `done` before any rank writes a shard, or the batch plans differ.
    barrier(dist)
    todo = [i for i in range(len(source.dataset)) if i not in done]
    batches = my_batches(todo, fastpath.auto_batch_size(cfg.batch_size, device), dist)
    measures = _Measures(cfg, device)
    if tokenizer is not None and hasattr(tokenizer, "to"):
        tokenizer = tokenizer.to(device)
        if cfg.compile:
            tokenizer = fastpath.compile_model(tokenizer)
    process = fastpath.BackoffProcessor(lambda b: _process(tokenizer, b, budgets, cfg, measures, device, fam))
    if global_stream:
        # Faithful reproduction needs the global stream (STYLE.md §10 exception): seed it once (for
        # `official`, then skip the official model construction's draws), and on resume continue
        # from the state saved after the last finished batch.
        state = store.last_rng_state()
        if state is not None:
            torch.set_rng_state(torch.from_numpy(state))
        else:
            start_global_stream(cfg.options, cfg.seed, getattr(tokenizer, "cfg", None) if budgets else None)
    calls = 0
    if batches:
        loader = DataLoader(identify(source.dataset), batch_sampler=batches, num_workers=cfg.workers,
                            collate_fn=_collate_with_positions, pin_memory=device.type == "cuda")
        stages = (["reconstruction"] if budgets else []) + [m.name.capitalize() for m, _ in measures.featured]
        label = " + ".join(stages) or "reconstruction"
        if Path(run_path).parent.name == "sweeps":  # one of several sweeps of a run (compare, allocate): name it
            label = f"{Path(run_path).name}: {label}"
        with _progress(cfg.progress and dist.main, sum(map(len, batches)), len(done), label) as advance:
            for batch in loader:
                arrays = {**process(batch), **batch["file_arrays"]}
                calls += int(len(batch["ids"]) > 0 and bool(budgets))
                if cfg.strict and batch["failed"]:
                    raise DataError(f"cannot decode {batch['failed'][0][0]}: {batch['failed'][0][1]} (--strict)")
                store.write(int(min(batch["positions"])), arrays)
                advance(len(batch["positions"]))
                if on_batch:
                    on_batch(len(batch["positions"]))
    barrier(dist)
    if not dist.main:
        return None
    per_image, failed = _table(store, budgets, source)
    if not len(store.concat("index")):
        raise DataError(f"no image of {source.name} could be decoded ({len(failed)} failed)")
    info = {"device": str(device), **{k: cfg.options.get(k) for k in top_level_names()}, "precision": cfg.precision,
            "approximate": cfg.precision != "fp32", "compile": cfg.compile,
            "batch_size": fastpath.auto_batch_size(cfg.batch_size, device), "oom_chunk": process.limit, **measures.info}
    return SweepResult(store, budgets, per_image, failed, info, calls)


def _collate_with_positions(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch = collate(items)
    batch["positions"] = [it["index"] for it in items]
    batch["file_arrays"] = identity_arrays(items)
    return batch


def _process(tokenizer, batch, budgets, cfg, measures, device, fam=None) -> dict[str, np.ndarray]:
    failed = batch["failed"]
    arrays: dict[str, np.ndarray] = {
        "index": np.asarray(batch["indices"], dtype=np.int64),
        "id": np.asarray(batch["ids"], dtype=str),
        "failed_id": np.asarray([f[0] for f in failed], dtype=str),
        "failed_error": np.asarray([f[1] for f in failed], dtype=str),
    }
    ok = set(batch["indices"])
    arrays["failed_index"] = np.asarray([p for p in batch["positions"] if p not in ok], dtype=np.int64)
    if len(batch["ids"]):
        images_u8 = batch["images"]
        ref = images_u8.to(device)
        # no budgets: a reference-only sweep (originals' features, e.g. fid-stats)
        x, rollout = _rollout(tokenizer, ref, batch["ids"], budgets, cfg, device, fam) if budgets else (None, {})
        metrics: dict[str, list[np.ndarray]] = {}
        recons = []
        for b in budgets:
            out = rollout[b]
            raw = out.extras.get("reconstruction_raw", out.reconstruction)
            rec = to_uint8(raw, cfg.rounding)
            recons.append(rec)
            for _, meter in measures.meters:
                for name, values in meter.per_image(rec, ref, raw=raw, x=x).items():
                    metrics.setdefault(name, []).append(values.double().cpu().numpy())
            for name in cfg.capture:
                arrays[f"cap_{name}_{b}"] = CAPTURES[name](out).detach().float().cpu().numpy()
            mask = out.halting_mask
            metrics.setdefault("halted_2d", []).append(
                (mask.sum(1).cpu().numpy() if mask is not None else np.zeros(len(rec))).astype(np.float64))
            metrics.setdefault("tokens_used", []).append(tokens_used(out).cpu().numpy().astype(np.float64))
        for name in _per_image_keys():  # the shard's column order: pixel, raw, LPIPS, tokenizer facts, added measures
            if metrics.get(name):
                arrays[name] = np.stack(metrics[name], axis=1)
        for measure, meter in measures.featured:
            with fastpath.precision(cfg.precision, device):
                feats = meter.features(torch.cat([ref] + recons))
            n = len(ref)
            for j, key in enumerate(feature_keys(budgets, measure.feature_key)):
                arrays[key] = feats[n * j : n * (j + 1)]
        if cfg.save_recons and budgets:  # the measured uint8 images, as PNGs (engine/recons.py)
            from alit_eval.engine.recons import save_batch

            save_batch(cfg.save_recons, batch["ids"], ref.cpu().numpy(), [r.cpu().numpy() for r in recons], budgets)
        arrays.update(_examples(arrays["index"], ref, recons, budgets, cfg.n_examples))
    if uses_global_stream(cfg.options):
        arrays["rng_state"] = torch.get_rng_state().numpy()
    return arrays


def _rollout(tokenizer: Any, ref: torch.Tensor, ids: list[str], budgets: list[int], cfg: SweepConfig,
             device: torch.device, fam: Any) -> tuple[torch.Tensor, dict[int, Any]]:
    """The tokenizer's decoded rollout of a uint8 batch at `budgets`: its [0, 1] input and the outputs per budget."""
    x = ref.float().div_(255.0)
    # One generator per image for every family that draws random numbers (a tokenizer of no
    # registered family gets them too, where its rollout takes `generator`); a global-stream
    # policy ignores them and draws from the global RNG, seeded once per run above.
    gens = per_image_generators(cfg.seed, ids) if fam is None or fam.random else None
    # The family's inference options reach only tokenizers whose rollout takes them.
    options = inference_kwargs(tokenizer, {"generator": gens, **cfg.options})
    with fastpath.precision(cfg.precision, device):
        rollout = tokenizer.rollout(x, budgets, decode=True, attention=attention_for(tokenizer, cfg.attention),
                                    **options)
    return x, rollout


def _examples(index: np.ndarray, ref: torch.Tensor, recons: list[torch.Tensor], budgets: list[int],
              n_examples: int) -> dict[str, np.ndarray]:
    """The example images kept for the report: originals and reconstructions of the first `n_examples` indices."""
    keep = index < n_examples
    if not keep.any():
        return {}
    arrays = {"example_index": index[keep], "example_ref": ref.cpu().numpy()[keep]}
    for j, b in enumerate(budgets):
        arrays[f"example_{b}"] = recons[j].cpu().numpy()[keep]
    return arrays


def _per_image_keys() -> tuple[str, ...]:
    """Per-image shard keys and table columns, in their order: the built-in measures' (pixel, raw, LPIPS),
    the tokenizer's facts (`OTHER_COLUMNS`), then any added measure's."""
    builtin = (*PIXEL_METRICS, *RAW_METRICS, *(c for c in per_image_columns(builtin=True)
                                               if c not in PIXEL_METRICS + RAW_METRICS))
    return (*builtin, *(c for c in OTHER_COLUMNS if c not in builtin), *per_image_columns(builtin=False))


def _table(store: ShardStore, budgets: list[int], source: Source):
    """The per-image table (one row per image and budget, image-index order), built column-wise."""
    import pandas as pd

    failed: list[tuple[str, str]] = []
    parts = []
    keys = ("index", "id", "failed_id", "failed_error", *_per_image_keys())
    for shard in store.iter(keys):
        failed += list(zip(shard["failed_id"].tolist(), shard["failed_error"].tolist()))
        n, nb = len(shard["index"]), len(budgets)
        if not n or not nb:
            continue
        cols = {"image_id": np.repeat(shard["id"].astype(object), nb), "index": np.repeat(shard["index"], nb),
                "budget": np.tile(np.asarray(budgets, dtype=np.int64), n)}
        for m in _per_image_keys():
            if m in shard:
                cols[m] = shard[m].reshape(-1)  # [n, nb] row-major matches repeat/tile above
        parts.append(pd.DataFrame(cols))
    if not parts:
        return pd.DataFrame(columns=["image_id", "index", "budget", "label"]), failed
    df = pd.concat(parts, ignore_index=True).sort_values(["index", "budget"], kind="stable").reset_index(drop=True)
    df["halted_2d"] = df["halted_2d"].astype("int64")
    if "tokens_used" in df:  # absent from sweeps stored before the column existed
        df["tokens_used"] = df["tokens_used"].astype("int64")
    labels: dict[str, Any] = {}
    if getattr(source.dataset, "records", None) is not None:
        labels = {r.id: r.label for r in source.dataset.records}
    truth = {r["id"]: r for r in source.dataset.ground_truth()} if hasattr(source.dataset, "ground_truth") else {}
    df.insert(3, "label", df["image_id"].map(lambda i: truth[i]["label"] if i in truth else labels.get(i)))
    for k in ("complexity", "complexity_level", "n_objects"):
        if truth and any(k in r for r in truth.values()):
            df[k] = df["image_id"].map(lambda i, k=k: truth.get(i, {}).get(k))
    return df, failed


PLAIN_EVERY_S = 30.0  # without a terminal: a progress line at least this often...
PLAIN_EVERY_SHARE = 0.1  # ...and at every 10% of the images


def _rate(done: int, seconds: float) -> str:
    """Throughput that stays readable when slow: ``3.2 img/s``, or ``25 s/img`` below one image a second."""
    if done <= 0 or seconds <= 0:
        return "- img/s"
    rate = done / seconds
    return f"{rate:.1f} img/s" if rate >= 1 else f"{seconds / done:.0f} s/img"


def _eta(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class _progress:
    """Progress of the sweep (reconstruction and, with FID, Inception features): a rich bar with images/s
    and ETA on a terminal; plain lines (every 10% or 30 s) when stdout is a file or a pipe; nothing
    when disabled.

    Args:
        enabled: show progress at all.
        total: images to process in this run.
        already: images done by an earlier, interrupted run.
        label: what each image goes through (the bar's title).
        stream: where plain lines go (default stdout, where the tables go too).
    """

    def __init__(self, enabled: bool, total: int, already: int, label: str = "sweep", stream: Any = None) -> None:
        self.enabled, self.total, self.already, self.label = enabled, total, already, label
        self.stream = stream if stream is not None else sys.stdout
        self.plain = not (hasattr(self.stream, "isatty") and self.stream.isatty())

    def __enter__(self) -> Callable[[int], None]:
        self.t0 = time.perf_counter()
        if not self.enabled:
            return lambda n: None
        if self.plain:
            return self._plain()
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn)

        self.bar = Progress(TextColumn(f"[bold]{self.label}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]} img/s"), TimeRemainingColumn(), transient=False)
        self.bar.start()
        self.task = self.bar.add_task("sweep", total=self.total, rate="-")
        if self.already:
            self.bar.console.print(f"resuming: {self.already} images already done")
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            rate = done[0] / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.update(self.task, advance=n, rate=f"{rate:.2g}")

        return advance

    def _plain(self) -> Callable[[int], None]:
        """Plain progress lines: a file or a pipe shows no live bar, so say something every 10% or 30 s.

        Images are counted per batch; a background timer also says where the run stands when a batch
        takes longer than 30 s, so a slow CPU run never goes quiet for minutes.
        """
        import threading

        lock = threading.Lock()

        def say(text: str) -> None:
            print(f"{self.label}: {text}", file=self.stream, flush=True)

        say(f"{self.total} images to process" + (f" ({self.already} already done)" if self.already else ""))
        step = max(1, round(self.total * PLAIN_EVERY_SHARE))  # in images: no float drift between marks
        state = {"done": 0, "last_t": self.t0, "next_at": step}

        def line(now: float) -> str:
            share = state["done"] / max(self.total, 1)
            left = (self.total - state["done"]) * (now - self.t0) / state["done"] if state["done"] else None
            tail = ("done in " + _eta(now - self.t0) if state["done"] >= self.total else
                    "ETA " + (_eta(left) if left is not None else "after the first batch"))
            return (f"{state['done']}/{self.total} images ({100 * share:.0f}%), "
                    f"{_rate(state['done'], now - self.t0)}, {tail}")

        def advance(n: int) -> None:
            with lock:
                state["done"] += n
                now = time.perf_counter()
                if state["done"] < state["next_at"] and now - state["last_t"] < PLAIN_EVERY_S:
                    return
                state["last_t"], state["next_at"] = now, (state["done"] // step + 1) * step
                say(line(now))

        self.stop = threading.Event()

        def tick() -> None:  # between batches: a line at least every PLAIN_EVERY_S
            while not self.stop.wait(min(1.0, PLAIN_EVERY_S / 2)):
                with lock:
                    now = time.perf_counter()
                    if now - state["last_t"] >= PLAIN_EVERY_S and state["done"] < self.total:
                        state["last_t"] = now
                        say(line(now) + " (working on a batch)")

        threading.Thread(target=tick, daemon=True).start()
        return advance

    def __exit__(self, *exc: object) -> None:
        if getattr(self, "stop", None) is not None:
            self.stop.set()
        if self.enabled and not self.plain:
            self.bar.stop()
