"""Get the sweep an analysis consumes: run it in the command's folder, or reuse an earlier run's.

Analyses (`allocate`, `entropy-correlation`, `familiarity`) never loop over images themselves. They
either run the engine's sweep into their own run folder, or, with ``--from-run RUN_DIR``, read the
per-image table (``per_image.parquet``) and the shards (``shards/*.npz``: per-image metric arrays
and Inception features) of a finished sweep, without a single rollout. A sweep folder is any
folder holding ``config.json``, ``per_image.parquet`` and ``shards/``: the run folder of ``fid``,
``allocate`` or ``entropy-correlation``, or one ``sweeps/<name>/`` sub-folder of ``familiarity``.
A run that itself reused another (``config.json`` has ``from_run``) is followed to its source.

Use: ``plan = plan_sweep(req, from_run, ...)`` (loads the tokenizer or reads the old run; no
computation), fold ``plan.config`` into the command's config, open the run folder, then
``inputs = plan.execute(run.path)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from alit_eval.data.sources import Source, open_source
from alit_eval.engine.config import SweepConfig
from alit_eval.engine.prepare import Prepared, data_record, prepare
from alit_eval.engine.store import ShardStore
from alit_eval.engine.sweep import PIXEL_METRICS, SweepResult, run_sweep
from alit_eval.errors import AlitEvalError
from alit_eval.metrics.measures import feature_keys
from alit_eval.paths import portable
from alit_eval.results.readers import read_json, read_table

MAX_FOLLOW = 8  # how many from_run links are followed before giving up (a loop)


@dataclass
class SweepInputs:
    """What an analysis gets: the sweep result and what to record about where it came from.

    Attributes:
        result: per-image table, shard store and budgets (``rollout_calls`` is 0 when reused).
        config: the sweep's config (as in the sweeping run's ``config.json``).
        dataset: short dataset label for tables (demo split name or the folder's name).
        preprocess: preprocess mode of the inputs (``generated`` for demo splits).
        checkpoint: checkpoint facts for meta.json (name, sha256, ...).
        sweep_path: the folder holding the shards.
        from_run: the reused run folder, or None when the sweep ran here.
        resolved_from: where each defaulted sweep option came from (`engine.config.resolve_defaults`).
    """

    result: SweepResult
    config: dict[str, Any]
    dataset: str
    preprocess: str
    checkpoint: dict[str, Any]
    sweep_path: Path
    from_run: str | None = None
    _source: Source | None = field(default=None, repr=False)
    resolved_from: dict[str, str] = field(default_factory=dict)

    def source(self) -> Source:
        """The dataset the sweep saw (re-opened from the config when the sweep was reused).

        Only for cheap per-image CPU work (complexity measures, galleries); never a tokenizer loop.

        Raises:
            AlitEvalError: the dataset cannot be opened again (moved files, unknown image size).
        """
        if self._source is None:
            self._source = reopen_source(self.config, self.result.store)
        return self._source


@dataclass
class SweepPlan:
    """A sweep ready to run (`prepared`) or an earlier one to reuse (`loaded`)."""

    config: dict[str, Any]
    prepared: Prepared | None = None
    loaded: SweepInputs | None = None

    def execute(self, run_path: Path, *, on_batch: Callable[[int], None] | None = None, tokenizer: Any = None,
                dist: Any = None) -> SweepInputs | None:
        """Run (or resume) the sweep into ``run_path/shards``, or return the reused one.

        `tokenizer` replaces the planned one (a wrapper such as a feature tap); under torchrun
        (`dist`) ranks other than 0 store their batches and get None.
        """
        if self.loaded is not None:
            return self.loaded
        p = self.prepared
        assert p is not None
        result = run_sweep(tokenizer if tokenizer is not None else p.tokenizer, p.source, p.sweep, run_path,
                           on_batch=on_batch, dist=dist)
        if result is None:
            return None
        return SweepInputs(result, p.config, dataset_label(p.source.name, p.source.kind), p.source.preprocess,
                           p.checkpoint, Path(run_path), None, p.source, dict(p.resolved_from))

    @classmethod
    def of(cls, prepared: Prepared) -> "SweepPlan":
        """A plan for a sweep already prepared with `engine.prepare.prepare`."""
        return cls(prepared.config, prepared=prepared)


def dataset_label(name: str, kind: str) -> str:
    """Short dataset label: the demo split name, or the last component of a path."""
    return name if kind == "demo" else Path(name).name


def plan_sweep(req: SweepConfig, from_run: str | Path | None, *, seed: int, device: str, offline: bool,
               progress: bool = True) -> SweepPlan:
    """Prepare a fresh sweep of `req`, or load the finished sweep in `from_run` (then `req` is unused).

    The returned ``config`` is what the command should record: the sweep config (with the tokenizer's
    ``image_size``, so a later ``--from-run`` can re-open the dataset), or ``{"from_run": ...,
    "sweep": <that run's config>}``.
    """
    if from_run is not None:
        inputs = load_sweep(from_run)
        return SweepPlan({"from_run": inputs.from_run, "sweep": inputs.config}, loaded=inputs)
    p = prepare(req, seed=seed, device=device, offline=offline, progress=progress)
    p.config["image_size"] = int(p.tokenizer.image_size)
    return SweepPlan(p.config, prepared=p)


def plan_sweeps(req: SweepConfig, datas: list[str], *, seed: int, device: str, offline: bool,
                progress: bool = True) -> list[SweepPlan]:
    """Fresh sweeps of one tokenizer over several datasets, loading the tokenizer once.

    Each plan's config is what `engine.prepare.prepare` would record for that dataset alone.
    """
    from dataclasses import replace

    if not datas:
        return []
    first = plan_sweep(replace(req, data=datas[0]), None, seed=seed, device=device, offline=offline,
                       progress=progress)
    p0 = first.prepared
    assert p0 is not None
    plans = [first]
    for data in datas[1:]:
        source = open_source(data, size=p0.tokenizer.image_size, preprocess=p0.sweep.preprocess,
                             limit=req.limit, subset_seed=req.subset_seed, follow_symlinks=req.follow_symlinks)
        config = {**p0.config, "data": data_record(data, source)}
        plans.append(SweepPlan(config, prepared=Prepared(p0.tokenizer, p0.checkpoint, source, p0.sweep, config,
                                                         p0.resolved_from)))
    return plans


def load_sweep(run_dir: str | Path) -> SweepInputs:
    """Read a finished sweep folder (see the module docstring) without recomputing anything.

    Raises:
        AlitEvalError: the folder is missing, unfinished, or holds no shards.
    """

    path = Path(run_dir).expanduser()
    for _ in range(MAX_FOLLOW):
        if not path.is_dir():
            raise AlitEvalError(f"--from-run {path}: no such folder; pass a run folder such as results/fid/<run_id>")
        config_file = path / "config.json"
        if not config_file.is_file():
            raise AlitEvalError(f"--from-run {path}: no config.json, so it is not an alit-eval run folder")
        config = read_json(config_file, what="the run's config")
        if (path / "shards").is_dir() or "from_run" not in config:
            break
        path = Path(config["from_run"]).expanduser()  # this run reused another: go to the one with the shards
    else:
        raise AlitEvalError(f"--from-run {run_dir}: more than {MAX_FOLLOW} chained from_run links")
    if not (path / "per_image.parquet").is_file():
        raise AlitEvalError(f"--from-run {path}: no per_image.parquet, so its sweep did not finish; rerun that "
                            "command to complete it")
    if not (path / "shards").is_dir():
        raise AlitEvalError(f"--from-run {path}: no shards/ folder; it cannot be reused")
    meta_file = path / "meta.json"
    meta = read_json(meta_file, what="the run's meta.json") if meta_file.is_file() else {}
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    per_image = read_table(path / "per_image.parquet", "per_image")
    # Every sweep writes all pixel metrics; l1 (the default criterion) is the one a reader cannot do without.
    lacking = [c for c in PIXEL_METRICS[:1] if c not in per_image.columns]
    if lacking:
        raise AlitEvalError(f"{path / 'per_image.parquet'} lacks the column(s) {lacking} that every sweep writes; "
                            "the file is damaged: rerun the command that made this run (without --from-run)")
    store = _read_only_store(path)
    for shard in store.files():  # a damaged shard is named here, not met as a BadZipFile later
        why = store.damage(shard)
        if why is not None:
            raise AlitEvalError(f"--from-run {path}: shard {shard} is damaged ({why}); rerun the command that "
                                "made this run (without --from-run) to recompute it")
    budgets = sorted(int(b) for b in per_image["budget"].unique())
    info: dict[str, Any] = {"device": meta.get("device"), "halting": config.get("halting"), "reused": True}
    if extra.get("inception"):
        info["inception"] = extra["inception"]
    elif config.get("fid"):
        info["inception"] = {"resize": config.get("fid_resize", "tf1")}
    failed = [(s["id"], s["error"]) for s in extra.get("skipped_images", [])]
    result = SweepResult(store, budgets, per_image, failed, info, rollout_calls=0)
    data = config.get("data", {})
    name = str(data.get("source", path.name))
    kind = str(data.get("kind", "files"))
    return SweepInputs(result, config, dataset_label(name, kind), str(data.get("preprocess", "unknown")),
                       {**config.get("checkpoint", {}), **extra.get("checkpoint", {})}, path, _recorded(path),
                       resolved_from=dict(extra.get("resolved_from") or {}))


def _recorded(path: Path) -> str:
    """How a reused run is named in config/meta: relative to the working directory when inside it
    (``results/fid/<id>``, so committed results name no local folders), else `portable`."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return portable(resolved)


def _read_only_store(path: Path) -> ShardStore:
    # ShardStore() creates shards/ and deletes stale temp files: right for the writer, wrong for a
    # reader of somebody else's folder, so build the reader without running __init__.
    store = ShardStore.__new__(ShardStore)
    store.folder = path / "shards"
    return store


def has_features(store: ShardStore, budgets: list[int], key: str = "feat") -> bool:
    """Whether the shards hold a measure's features (default: Inception's) of the originals and every budget."""
    files = store.files()
    if not files:
        return False
    with np.load(files[0], allow_pickle=False) as z:
        return set(feature_keys(budgets, key)) <= set(z.files)


def reopen_source(config: dict[str, Any], store: ShardStore | None = None) -> Source:
    """Open the dataset of a recorded sweep config again, at the size the tokenizer saw.

    The size comes from the demo data record, the ``image_size`` the analyses record, or the stored
    example originals in the shards (``example_ref``), in that order.
    """
    data = config.get("data", {})
    if "source" not in data:
        raise AlitEvalError("the run's config.json does not name its dataset; cannot open it again")
    size = data.get("size") or config.get("image_size")
    if size is None and store is not None:
        for shard in store.iter(["example_ref"]):
            if "example_ref" in shard and len(shard["example_ref"]):
                size = int(shard["example_ref"].shape[-1])
                break
    if size is None:
        raise AlitEvalError("cannot tell the image size the tokenizer saw in this run; rerun the sweep with "
                            "this alit-eval version instead of --from-run")
    limit = data.get("n") if data.get("kind") == "demo" else data.get("limit")
    preprocess = data.get("preprocess") if data.get("kind") != "demo" else "resize-center-crop"
    return open_source(str(data["source"]), size=int(size), preprocess=preprocess or "resize-center-crop",
                       limit=limit, subset_seed=data.get("subset_seed"),
                       follow_symlinks=bool(data.get("follow_symlinks", False)))
