"""What "tokens" means in every analysis: the tokens the decoder actually receives.

A budget is what the tokenizer is asked for; a family whose model drops slots itself (KARL's halting)
decodes from fewer. The engine records those per image and budget as ``tokens_used``
(`alit_eval.tokenizers.family_queries.tokens_used`, e.g. ``extras["num_active"]``); sweeps stored before
the column existed, and families that keep every token, use the budget itself. Every figure, table
and test that counts tokens (matched tokens, quality and bits against tokens, rate-distortion,
allocate, the report) goes through this module, so one run never shows two token counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

DEFINITION = ("tokens = the tokens the decoder actually receives (the sweep's tokens_used, e.g. KARL's kept "
              "slots; the budget for families that keep every token); bits = tokens x bits per token")


def per_image(table: "pd.DataFrame") -> np.ndarray:
    """Tokens each row of a per-image table (one row per image and budget) decodes from."""
    budget = table["budget"].to_numpy(np.float64)
    if "tokens_used" not in table:
        return budget
    used = table["tokens_used"].to_numpy(np.float64)
    return np.where(np.isfinite(used), used, budget)


def mean_per_budget(table: "pd.DataFrame") -> "pd.Series":
    """Budget -> mean tokens received over the images (the x of every 'against tokens' curve)."""
    return table.assign(_tokens=per_image(table)).groupby("budget")["_tokens"].mean()


def at_budgets(index: "pd.Series | np.ndarray", budgets: "pd.Series | np.ndarray",
               table: "pd.DataFrame") -> np.ndarray:
    """Tokens received by each (dataset index, budget) pair, looked up in the sweep's per-image table."""
    lookup = dict(zip(zip(table["index"].astype(int), table["budget"].astype(int)), per_image(table)))
    return np.array([lookup.get((int(i), int(b)), float(b)) for i, b in zip(index, budgets)], dtype=np.float64)


def at_selection(selection: "pd.DataFrame", table: "pd.DataFrame", max_budget: int | None = None) -> np.ndarray:
    """Tokens each selected row decodes from: the tokens received at its selected budget; with
    `max_budget`, a censored row counts at that budget instead (a lower bound of what it needs: the
    image never reaches the threshold).

    Args:
        selection: rows with ``index`` (dataset index), ``selected_budget`` and ``censored``.
        table: the sweep's per-image table the selection was made from.
    """
    budgets = selection["selected_budget"].to_numpy(np.int64)
    if max_budget is not None:
        budgets = np.where(selection["censored"].to_numpy(bool), max_budget, budgets)
    return at_budgets(selection["index"], budgets, table)


def differs(table: "pd.DataFrame") -> bool:
    """Whether any image decodes from fewer tokens than its budget (the figures then say so)."""
    return bool(np.any(per_image(table) != table["budget"].to_numpy(np.float64)))
