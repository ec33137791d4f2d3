"""Each metric's name, direction and level, declared once.

Tables, reports and plots read `METRICS` to know whether a smaller number is better and whether
a metric is computed per image (and then averaged) or once per image set.
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
        name: short column name used in every results table.
        higher_is_better: direction of improvement.
        level: ``"image"`` (one value per image, aggregated by mean) or ``"set"`` (one value
            per image set).
        unit: unit of the value ("" when dimensionless).
        description: one line for tables and `--help`.
    """

    name: str
    higher_is_better: bool
    level: Level
    unit: str
    description: str


METRICS: Registry[MetricSpec] = Registry("metric")


def _declare(spec: MetricSpec) -> None:
    METRICS.register(spec.name, spec)


_declare(
    MetricSpec(
        "l1", False, "image", "", "mean absolute pixel error on [0,1] uint8-quantised images"
    )
)
_declare(
    MetricSpec(
        "l1_raw", False, "image", "",
        "mean absolute error of the raw (unclamped, float) reconstruction: the official encode() L1",
    )
)
_declare(
    MetricSpec(
        "mse", False, "image", "", "mean squared pixel error on [0,1] uint8-quantised images"
    )
)
_declare(
    MetricSpec(
        "psnr", True, "image", "dB", "peak signal-to-noise ratio, data range 1 (inf if identical)"
    )
)
_declare(
    MetricSpec("ssim", True, "image", "", "structural similarity, Gaussian 11x11 window, sigma 1.5")
)
_declare(
    MetricSpec("lpips", False, "image", "", "learned perceptual distance (LPIPS, AlexNet backbone)")
)
_declare(MetricSpec("fid", False, "set", "", "Frechet Inception distance on 2048-d pool features"))
_declare(
    MetricSpec(
        "kid",
        False,
        "set",
        "",
        "kernel Inception distance (cubic polynomial kernel, unbiased MMD^2)",
    )
)
