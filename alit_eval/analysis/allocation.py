"""Token selection criteria (TSC): which budget each image gets.

The official criterion (alit_official.md §3, ``encode()``): the first iteration whose L1 is below the
threshold; if none, the iteration with the lowest L1 (first on ties), which is not necessarily the
last. The official L1 is a mean over the whole batch; alit-eval applies it per image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def select_official(values: Sequence[float], threshold: float) -> tuple[int, str]:
    """Index chosen by the official L1 criterion over per-budget errors (ascending budgets).

    Returns:
        ``(index, how)`` with ``how`` either ``"first_below_threshold"`` or ``"fallback_min_l1"``.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("need a non-empty 1-D sequence of per-budget errors")
    below = np.flatnonzero(arr < threshold)
    if below.size:
        return int(below[0]), "first_below_threshold"
    return int(np.argmin(arr)), "fallback_min_l1"
