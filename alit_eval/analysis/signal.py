"""Does the selection metric change with the token budget at all? A guard before allocation analyses.

Threshold selection sorts images by when their metric crosses a threshold. If the metric barely
moves across budgets (e.g. a random-weight tokenizer: L1 moves by 4e-4 from 32 to 256 tokens), the
"selected budget" only reflects each image's overall error level, which is set by image content, and
any correlation with image complexity is then spurious (issue: rho = 0.75, p = 0.003 on random
weights). `budget_signal` measures, from the per-image table alone, whether the metric moves across
budgets by more than its noise; `warn_if_flat` logs a loud warning and returns the columns the
analyses add to their CSV.

The test (all on the per-image table, images paired with themselves):

- ``effect``: median over images of the improvement from the smallest to the largest budget
  (``metric(min) - metric(max)`` for lower-is-better metrics, the opposite for higher-is-better).
- ``jitter`` (per-image noise): median over images of the largest step in the *wrong* direction
  between consecutive budgets (0 for a monotone curve). A budget effect no larger than the wiggles
  of the same image's curve cannot be told from noise.
- ``spread``: interquartile range over images of the metric at the smallest budget, i.e. the scale
  on which thresholds sort images. A budget effect that is a tiny fraction of it means thresholds
  sort images by content, not by tokens.
- ``p_value``: one-sided Wilcoxon signed-rank test that the per-image improvements are positive.

Verdict ``flat`` unless all three hold: ``effect > JITTER_FACTOR * jitter``,
``effect > MIN_SPREAD_FRACTION * spread`` and ``p_value < ALPHA``; ``too-few-images`` with fewer than
`MIN_IMAGES` images or a single budget (nothing can be concluded, no warning); else ``ok``.
The constants are deliberately lenient: the check catches tokenizers whose quality does not depend
on tokens, not weak ones. Measured on 100 demo-scenes images, L1, 8..64 tokens: the bundled demo
tokenizer has effect 0.026, jitter 0.00024, spread 0.117 (effect/spread 0.22, 4x above the bound:
``ok``); the same architecture with random weights has effect 0.00022, jitter 0.000065, spread 0.048
(effect/spread 0.0045, 11x below: ``flat``) although its Wilcoxon p is 8e-10, which is why
significance alone is not the test: with enough images any systematic drift is "significant".
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

JITTER_FACTOR = 2.0  # the budget effect must exceed twice the curve's own wrong-way wiggles
MIN_SPREAD_FRACTION = 0.05  # ...and 5% of the between-image interquartile range
ALPHA = 0.05
MIN_IMAGES = 5
PSNR_CAP_DB = 100.0  # identical images have infinite PSNR; cap as the reconstruction table does


@dataclass(frozen=True)
class BudgetSignal:
    """Result of `budget_signal` (all metric values in the metric's units)."""

    metric: str
    verdict: str  # "ok" | "flat" | "too-few-images"
    n_images: int
    budget_min: int
    budget_max: int
    effect: float
    jitter: float
    spread: float
    p_value: float

    @property
    def flat(self) -> bool:
        return self.verdict == "flat"

    def message(self) -> str:
        """One line for the console and the report."""
        return (f"the {self.metric} metric barely changes with the token budget: median improvement "
                f"{self.effect:.3g} from {self.budget_min} to {self.budget_max} tokens vs per-image noise "
                f"{self.jitter:.3g} and between-image spread {self.spread:.3g} (p = {self.p_value:.2g}, "
                f"n = {self.n_images}); selected budgets and their correlations then reflect image content, "
                "not token need")

    def columns(self) -> dict[str, Any]:
        """The flag columns an analysis adds to its CSV."""
        return {"budget_signal": self.verdict, "budget_signal_effect": self.effect,
                "budget_signal_jitter": self.jitter, "budget_signal_spread": self.spread}


def budget_signal(per_image: "pd.DataFrame", column: str, higher_is_better: bool = False) -> BudgetSignal:
    """Check that `column` of the per-image table varies across budgets by more than its noise.

    Args:
        per_image: the engine's per-image table (``index`` or ``image_id``, ``budget``, `column`).
        column: the metric the selection uses (e.g. ``l1``, ``l1_raw``, ``psnr``).
        higher_is_better: direction of the metric.

    Returns:
        A `BudgetSignal` (see the module docstring for the test).
    """
    from scipy.stats import wilcoxon

    key = "index" if "index" in per_image else "image_id"
    wide = per_image.pivot_table(index=key, columns="budget", values=column, aggfunc="first").sort_index(axis=1)
    v = wide.to_numpy(dtype=np.float64)
    if column == "psnr":
        v = np.minimum(v, PSNR_CAP_DB)
    v = v[np.isfinite(v).all(axis=1)] if v.size else v
    budgets = [int(b) for b in wide.columns]
    n = len(v)
    bmin, bmax = (budgets[0], budgets[-1]) if budgets else (0, 0)
    if n < MIN_IMAGES or len(budgets) < 2:
        nan = float("nan")
        return BudgetSignal(column, "too-few-images", n, bmin, bmax, nan, nan, nan, nan)
    good = v if higher_is_better else -v  # larger = better
    improvement = good[:, -1] - good[:, 0]
    worst_step = np.clip(-np.diff(good, axis=1), 0.0, None).max(axis=1)
    effect = float(np.median(improvement))
    jitter = float(np.median(worst_step))
    q1, q3 = np.percentile(v[:, 0], [25, 75])
    spread = float(q3 - q1)
    if np.all(improvement == 0):
        p = 1.0
    else:
        p = float(wilcoxon(improvement, alternative="greater", zero_method="wilcox").pvalue)
    ok = effect > JITTER_FACTOR * jitter and effect > MIN_SPREAD_FRACTION * spread and p < ALPHA
    return BudgetSignal(column, "ok" if ok else "flat", n, bmin, bmax, effect, jitter, spread, p)


def warn_if_flat(per_image: "pd.DataFrame", criterion: str) -> BudgetSignal:
    """`budget_signal` for an allocation criterion; logs a WARNING when the metric is flat.

    Args:
        per_image: the per-image table the selection is made from.
        criterion: a key of `alit_eval.analysis.token_selection.CRITERIA`.
    """
    from alit_eval.analysis.token_selection import criterion_spec

    column, direction = criterion_spec(criterion)
    result = budget_signal(per_image, column, higher_is_better=direction == "higher")
    if result.flat:
        log.warning("NO BUDGET SIGNAL: %s", result.message())
    return result


def flat_note(table: "pd.DataFrame") -> str | None:
    """A closing console line when a results table carries a ``budget_signal == "flat"`` flag, else None."""
    if "budget_signal" not in table or not (table["budget_signal"] == "flat").any():
        return None
    return ("warning: NO BUDGET SIGNAL: the selection metric does not change with the token budget (see the "
            "warning above and the budget_signal columns); treat these numbers as spurious")


def as_dict(result: BudgetSignal) -> dict[str, Any]:
    """Everything in `result` (for meta.json)."""
    return {**asdict(result), "message": result.message() if result.flat else ""}
