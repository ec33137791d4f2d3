"""Each metric's name, direction and level, declared once.

Tables, reports, plots and the token allocation read `METRICS` (and the views derived from it:
`PER_IMAGE`, `PIXEL`, `TABLE`, `HEADLINE`) to know a metric's label, unit and display format,
whether a smaller number is better, and whether it is computed per image (and then averaged) or
once per image set. A built-in metric is one `declare` line here; a measure added elsewhere
declares its own (`alit_eval.metrics.measures`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alit_eval.registry import Registry

Level = Literal["image", "set"]


@dataclass(frozen=True)
class MetricSpec:
    """What a metric is, independent of how it is computed.

    Attributes:
        name: the metric's name.
        higher_is_better: direction of improvement.
        level: ``"image"`` (one value per image, aggregated by mean) or ``"set"`` (one value
            per image set).
        unit: unit of the value ("" when dimensionless).
        description: one line for tables and `--help`.
        label: display name in tables, figures and the report.
        fmt: display format of a value (`format` spec).
        family: how it is computed: ``pixel`` (`metrics.pixel`), ``perceptual`` (LPIPS),
            ``inception`` (Inception features) or ``raw`` (the unquantised reconstruction; stored per
            image for selection criteria, not reported in tables).
        column: its name in ``metrics.csv`` and the per-image table (default: `name`).
    """

    name: str
    higher_is_better: bool
    level: Level
    unit: str
    description: str
    label: str = ""
    fmt: str = ".4g"
    family: str = "pixel"
    column: str = ""

    def __post_init__(self) -> None:
        if not self.column:
            object.__setattr__(self, "column", self.name)
        if not self.label:
            object.__setattr__(self, "label", self.name.upper())

    @property
    def direction(self) -> str:
        """``"higher"`` or ``"lower"`` (is better)."""
        return "higher" if self.higher_is_better else "lower"

    def axis_label(self, *, with_direction: bool = False) -> str:
        """Label with the unit, e.g. ``PSNR (dB)``; or ``PSNR dB (higher is better)``."""
        if with_direction:
            return f"{self.label}{' ' + self.unit if self.unit else ''} ({self.direction} is better)"
        return f"{self.label} ({self.unit})" if self.unit else self.label


METRICS: Registry[MetricSpec] = Registry("metric")
_BY_COLUMN: dict[str, MetricSpec] = {}
# Derived views; every list of metric names elsewhere reads these (as ``specs.TABLE``: they grow when
# a measure declares a metric).
PER_IMAGE: tuple[str, ...] = ()
RAW: tuple[str, ...] = ()
PIXEL: tuple[str, ...] = ()
TABLE: tuple[str, ...] = ()  # table order: the set-level FID first, then the per-image metrics, then the rest
HEADLINE: tuple[str, ...] = ()  # figures and the report


def _refresh() -> None:
    global _BY_COLUMN, PER_IMAGE, RAW, PIXEL, TABLE, HEADLINE
    entries = [s for _, s in METRICS.items()]
    _BY_COLUMN = {s.column: s for s in entries}
    PER_IMAGE = tuple(s.column for s in entries if s.level == "image" and s.family != "raw")
    RAW = tuple(s.column for s in entries if s.family == "raw")
    PIXEL = tuple(s.column for s in entries if s.family == "pixel")
    TABLE = ("rfid", *PER_IMAGE, *(s.column for s in entries if s.level == "set" and s.column != "rfid"))
    HEADLINE = tuple(c for c in TABLE if c not in ("mse", "kid"))


def declare(spec: MetricSpec) -> None:
    """Add a metric (a registered measure declares its own: `alit_eval.metrics.measures`); the views follow."""
    METRICS.register(spec.name, spec)
    _refresh()


def undeclare(name: str) -> None:
    """Remove a metric declared by a measure that is unregistered again (tests)."""
    METRICS._entries.pop(name, None)
    _refresh()


_declare = declare


_declare(MetricSpec("l1", False, "image", "", "mean absolute pixel error on [0,1] uint8-quantised images",
                    label="L1"))
# The official encode() criterion's error: L1 of the raw float reconstruction (unclamped, not quantised).
# A selection criterion (``--criterion official-l1``), not a reported quality metric.
_declare(MetricSpec("l1_raw", False, "image", "",
                    "mean absolute error of the raw (unclamped, float) reconstruction: the official encode() L1",
                    label="L1 (raw)", family="raw"))
_declare(MetricSpec("mse", False, "image", "", "mean squared pixel error on [0,1] uint8-quantised images",
                    label="MSE"))
_declare(MetricSpec("psnr", True, "image", "dB", "peak signal-to-noise ratio, data range 1 (inf if identical)",
                    label="PSNR"))
_declare(MetricSpec("ssim", True, "image", "", "structural similarity, Gaussian 11x11 window, sigma 1.5",
                    label="SSIM"))
_declare(MetricSpec("lpips", False, "image", "", "learned perceptual distance (LPIPS, AlexNet backbone)",
                    label="LPIPS", family="perceptual"))
# Reconstruction FID: the originals (or a reference .npz) against the reconstructions; "rfid" in tables.
_declare(MetricSpec("fid", False, "set", "", "Frechet Inception distance on 2048-d pool features",
                    label="rFID", family="inception", column="rfid"))
_declare(MetricSpec("kid", False, "set", "", "kernel Inception distance (cubic polynomial kernel, unbiased MMD^2)",
                    label="KID", family="inception"))


def spec(column: str) -> MetricSpec:
    """The spec of a ``metrics.csv`` metric name (``rfid``, ``l1``, ...).

    Raises:
        AlitEvalError: not a declared metric (with close names).
    """
    if column in _BY_COLUMN:
        return _BY_COLUMN[column]
    return METRICS.get(column)


def label(column: str, default: str | None = None) -> str:
    """Display name of a metric column; `default` (or the column itself) when it is not declared."""
    return _BY_COLUMN[column].label if column in _BY_COLUMN else (default if default is not None else column)


def direction(column: str) -> str:
    """``"higher"`` or ``"lower"`` (is better) of a declared metric column."""
    return spec(column).direction
