"""Figures of `alit-eval compare`: each function takes its tables and returns a Figure (nothing computed here).

- `quality_vs`: rFID, L1, PSNR, SSIM against tokens or against bits per image, one curve per
  tokenizer with its 95% CI band; against tokens, a curve breaks at a budget its tokenizer cannot
  produce (no line is drawn across the gap).
- `matched_tokens`: mean tokens needed at each matched threshold per tokenizer (95% CI bars), with
  a "≥" mark and the censored share above bars that count censored images at the largest budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from alit_eval.metrics import specs

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

PANELS = ("rfid", "l1", "psnr", "ssim")


def _title(metric: str) -> str:
    return specs.spec(metric).axis_label() if metric in specs.TABLE else metric


def quality_vs(table: "pd.DataFrame", x: str = "budget", *, excluded: Sequence[str] = (),
               panels: Sequence[str] = PANELS) -> "Figure":
    """One panel per metric, one curve per tokenizer, against `x` (``budget`` or ``bits_per_image``).

    Args:
        table: ``compare.csv`` rows (tokenizer, metric, value, ci_low, ci_high, status and `x`).
        excluded: tokenizers left out (e.g. no finite rate); named under the figure.
    """
    import matplotlib.pyplot as plt

    # Absent budgets stay in as NaN values so each curve breaks there instead of bridging the gap.
    d = table[table["status"].isin(("measured", "absent")) & table[x].notna()]
    present = [m for m in panels if m in set(d["metric"])]
    fig, axes = plt.subplots(1, max(len(present), 1), figsize=(3.2 * max(len(present), 1), 3.1), squeeze=False)
    for ax, m in zip(axes[0], present):
        for name, g in d[d["metric"] == m].groupby("tokenizer", sort=False):
            g = g.sort_values(x)
            xs = g[x].to_numpy(float)
            ax.plot(xs, g["value"].to_numpy(float), marker="o", label=str(name))
            if g["ci_low"].notna().any():
                ax.fill_between(xs, g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float), alpha=0.2)
        ax.set_xlabel("tokens" if x == "budget" else "bits per image")
        ax.set_title(_title(m))
        ax.legend(fontsize="small")
    if excluded:
        fig.text(0.01, -0.02, f"not shown (no finite rate: continuous latents): {', '.join(excluded)}", fontsize=8)
    fig.tight_layout()
    return fig


def matched_tokens(summary: "pd.DataFrame", criterion: str = "l1") -> "Figure":
    """Mean tokens needed per threshold and tokenizer (``matched_tokens.csv``), 95% CI as error bars."""
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(dict.fromkeys(summary["tokenizer"]))
    thresholds = sorted(summary["threshold"].unique())
    fig, ax = plt.subplots(figsize=(1.2 + 1.4 * len(thresholds) * max(len(names), 1) / 2, 3.2))
    width = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        g = summary[summary["tokenizer"] == name].set_index("threshold").reindex(thresholds)
        pos = np.arange(len(thresholds)) + (k - (len(names) - 1) / 2) * width
        mean = g["mean_tokens"].to_numpy(float)
        err = np.vstack([mean - g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float) - mean])
        ax.bar(pos, mean, width, yerr=np.nan_to_num(err), capsize=3, label=str(name))
        for p, m, c in zip(pos, mean, g["censored_share"].to_numpy(float)):
            if c > 0:  # censored images count at the largest budget: mark the bar as a lower bound
                ax.annotate(f"≥ ({100 * c:.0f}% cens.)", (p, m), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(np.arange(len(thresholds)))
    ax.set_xticklabels([f"{t:.4g}" for t in thresholds])
    ax.set_xlabel(f"{criterion} threshold (same for every tokenizer)")
    ax.set_ylabel("mean tokens needed per image")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def write_figures(folder: Path, table: "pd.DataFrame", summary: "pd.DataFrame", no_rate: Sequence[str],
                  criterion: str) -> None:
    """The three figures of a compare run into `folder` (PNG and PDF)."""
    from alit_eval.results import plots

    plots.save(quality_vs(table, "budget"), folder, "quality_vs_tokens")
    plots.save(quality_vs(table[~table["tokenizer"].isin(no_rate)], "bits_per_image", excluded=no_rate), folder,
               "quality_vs_bits")
    if len(summary):
        plots.save(matched_tokens(summary, criterion), folder, "matched_tokens")
