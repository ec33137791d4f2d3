"""Measures as registered objects, as pluggable as tokenizer families: one file adds one.

A `Measure` bundles what the sweep and the tables need to know about one way of comparing a
reconstruction with its original:

- ``specs``: the `MetricSpec` of every metric it reports (declared into `alit_eval.metrics.specs`
  when it is registered, so tables, figures, the report and ``compare`` know its direction and label);
- ``open(cfg, device)``: load what it needs once per sweep (a network, weights); returns a `Meter`,
  or None when it cannot run here (then the sweep goes on without it, and ``meter_info`` says why);
- per image: ``Meter.per_image(rec_u8, ref_u8, raw=..., x=...)``: one value per image and column,
  stored in the shards and in ``per_image.parquet`` (means and CIs per budget follow generically in
  `alit_eval.analysis.quality.summarize`);
- features: with ``feature_key``, ``Meter.features(images_u8)`` gives ``[N, D]`` features of the
  originals and of every budget, stored as ``<feature_key>_ref`` / ``<feature_key>_<budget>``;
- per set: ``set_rows(view)``: metric rows computed from the stored features (FID, KID, ...).

The built-in measures (pixel metrics, LPIPS, Inception/FID/KID) live in
`alit_eval.metrics.builtin_measures`; `register_measure` adds another (a module of its own, or a test).
A non-built-in measure runs when ``default_on`` or when its name is in ``SweepConfig.measures``, and
is then named in ``config.json`` (``measures``), so a run with it never resumes one without it.

Imports nothing above the foundation and `metrics.specs` (torch only inside the meters).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from alit_eval.metrics import specs as metric_specs
from alit_eval.metrics.specs import MetricSpec
from alit_eval.registry import Registry

BUILTIN_MODULES = ("alit_eval.metrics.builtin_measures",)  # imported on first use of the registry


class Meter:
    """A measure opened for one sweep (networks loaded, on the sweep's device)."""

    def per_image(self, rec_u8: Any, ref_u8: Any, *, raw: Any = None, x: Any = None) -> dict[str, Any]:
        """Per-image values ``column -> [B]`` of one budget's reconstructions.

        Args:
            rec_u8, ref_u8: reconstructions and originals, uint8 ``[B, 3, S, S]``.
            raw: the raw float reconstruction in [0, 1] (before clamping and rounding).
            x: the originals as float in [0, 1].
        """
        return {}

    def features(self, images_u8: Any) -> Any:
        """Features ``[N, D]`` (numpy float32) of uint8 images ``[N, 3, S, S]``."""
        raise NotImplementedError


@dataclass
class SetView:
    """What a measure's per-set statistics see of a finished sweep.

    Attributes:
        result: the `SweepResult` (``store``, ``budgets``, ``info``).
        seed: the run's seed (for any resampling).
        options: the command's per-set options (``fid``, ``fid_ref``, ``kid``).
        accumulate: ``accumulate(store, keys) -> {key: FeatureStats}`` (streaming float64 statistics).
    """

    result: Any
    seed: int
    options: dict[str, Any]
    accumulate: Callable[[Any, list[str]], dict[str, Any]]


@dataclass
class Measure:
    """One registered measure (see the module docstring).

    Attributes:
        name: registry name (``SweepConfig.measures`` and ``config.json`` use it).
        specs: the metrics it reports.
        columns: its per-image columns (the shard keys and ``per_image.parquet`` columns).
        feature_key: shard key prefix of its stored features, or None.
        builtin: recorded in config.json through its own options (``fid``, ...), not by name.
        default_on: runs without being asked for in ``SweepConfig.measures``.
    """

    name: str
    specs: tuple[MetricSpec, ...] = ()
    columns: tuple[str, ...] = ()
    feature_key: str | None = None
    builtin: bool = False
    default_on: bool = True
    info_key: str | None = None  # meta.json/result.info entry its `open` describes itself under
    _declared: bool = field(default=False, repr=False)

    def enabled(self, cfg: Any) -> bool:
        """Whether the sweep configured by `cfg` computes this measure."""
        return self.default_on or self.name in tuple(getattr(cfg, "measures", ()) or ())

    def open(self, cfg: Any, device: Any) -> tuple[Meter | None, Any]:
        """Load it for one sweep: ``(meter or None, what to record under info_key)``."""
        raise NotImplementedError

    def set_rows(self, view: SetView) -> list[dict[str, Any]]:
        """Per-set metric rows (``budget``, ``metric``, ``value``, ``n``, ``ci_low``, ``ci_high``,
        ``condition`` as a dict); [] when the sweep stored nothing for it."""
        return []


MEASURES: Registry[Measure] = Registry("measure")
_loaded = False


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def register_measure(measure: Measure) -> Measure:
    """Add `measure` to the registry and declare its metric specs (tables and figures follow)."""
    _load_builtins()
    for spec in measure.specs:
        if spec.name not in metric_specs.METRICS:
            metric_specs.declare(spec)
    MEASURES.register(measure.name, measure)
    return measure


def unregister_measure(name: str) -> None:
    """Remove a measure and its metric specs (tests that register a toy measure clean up with it)."""
    measure = MEASURES._entries.pop(name, None)
    if measure is not None and not measure.builtin:
        for spec in measure.specs:
            metric_specs.undeclare(spec.name)


def all_measures() -> list[Measure]:
    """Every registered measure, built-ins first, in registration order."""
    _load_builtins()
    return [m for _, m in MEASURES.items()]


def active_measures(cfg: Any) -> list[Measure]:
    """The measures a sweep with config `cfg` computes."""
    return [m for m in all_measures() if m.enabled(cfg)]


def per_image_columns(builtin: bool | None = None) -> tuple[str, ...]:
    """Per-image columns of the registered measures (only built-in or only added ones with `builtin`)."""
    return tuple(c for m in all_measures() if builtin is None or m.builtin == builtin for c in m.columns)


def recorded(cfg: Any) -> list[str]:
    """The non-built-in measures a sweep computes, as ``config.json`` records them (``measures``)."""
    return sorted(m.name for m in active_measures(cfg) if not m.builtin)


def feature_keys(budgets: Iterable[int], key: str) -> list[str]:
    """Shard keys of a measure's features: the originals', then every budget's."""
    return [f"{key}_ref", *(f"{key}_{b}" for b in budgets)]
