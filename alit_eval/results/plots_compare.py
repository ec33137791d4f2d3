"""Figures of `alit-eval compare`: each function takes its tables and returns a Figure (nothing computed here).

- `quality_vs`: rFID, L1, PSNR, SSIM against tokens (the tokens the decoder receives,
  `alit_eval.analysis.tokens`) or against bits per image, one curve per tokenizer with its 95% CI
  band (labelled); a budget a tokenizer cannot produce gets no marker (its measured neighbours are
  joined by the line, as any curve joins its points; no value is interpolated into the tables).
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


def _curve(g: "pd.DataFrame") -> "pd.DataFrame":
    """One tokenizer's measured points in budget order. A budget it cannot produce (``absent``) gets no
    marker, and the line and CI band join its measured neighbours (a line between measured points, no
    interpolated value: the table keeps the absent budget as NaN)."""
    return g[(g["status"] == "measured") & g["value"].notna()].sort_values("budget")


def quality_vs(table: "pd.DataFrame", x: str = "tokens", *, excluded: Sequence[str] = (),
               panels: Sequence[str] = PANELS, title: str = "", flagged: Sequence[str] = ()) -> "Figure":
    """One panel per metric, one curve per tokenizer, against `x` (``tokens`` or ``bits_per_image``).

    Args:
        table: ``compare.csv`` rows (tokenizer, budget, metric, value, ci_low, ci_high, status and `x`).
        x: ``tokens`` (mean tokens the decoder receives at each budget) or ``bits_per_image``.
        excluded: tokenizers left out (e.g. no finite rate); named under the figure.
        title: the figure title (data and number of images).
        flagged: tokenizers whose quality does not move with the budget (labelled "no budget signal").
    """
    import matplotlib.pyplot as plt

    from alit_eval.results.plots import add_title

    d = table[table["status"].isin(("measured", "absent"))]
    present = [m for m in panels if m in set(d["metric"])]
    fig, axes = plt.subplots(1, max(len(present), 1), figsize=(3.2 * max(len(present), 1), 3.1), squeeze=False)
    for ax, m in zip(axes[0], present):
        banded = False
        for name, g in d[d["metric"] == m].groupby("tokenizer", sort=False):
            g = _curve(g)
            if not len(g):
                continue
            xs = g[x].to_numpy(float)
            label = f"{name} (no budget signal)" if name in flagged else str(name)
            line = ax.plot(xs, g["value"].to_numpy(float), marker="o", label=label)[0]
            if g["ci_low"].notna().any():
                ax.fill_between(xs, g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float), alpha=0.2,
                                color=line.get_color(), label=None if banded else "95 % CI (bootstrap)")
                banded = True
        ax.set_xlabel("tokens received by the decoder" if x == "tokens" else "bits per image")
        ax.set_title(_title(m))
        ax.legend(fontsize="small")
    if excluded:
        fig.text(0.01, -0.02, f"not shown (no finite rate: continuous latents): {', '.join(excluded)}", fontsize=8)
    fig.tight_layout()
    return add_title(fig, title)


def matched_tokens(summary: "pd.DataFrame", criterion: str = "l1", title: str = "",
                   flagged: Sequence[str] = ()) -> "Figure":
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
        ax.bar(pos, mean, width, yerr=np.nan_to_num(err), capsize=3,
               label=f"{name} (no budget signal)" if name in flagged else str(name))
        for p, m, c in zip(pos, mean, g["censored_share"].to_numpy(float)):
            if c > 0:  # censored images count at the largest budget: mark the bar as a lower bound
                ax.annotate(f"≥ ({100 * c:.0f}% cens.)", (p, m), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(np.arange(len(thresholds)))
    ax.set_xticklabels([f"{t:.4g}" for t in thresholds])
    ax.set_xlabel(f"{criterion} threshold (same for every tokenizer)")
    ax.set_ylabel("mean tokens needed per image\n(received by the decoder; bars: 95 % CI)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    from alit_eval.results.plots import add_title

    return add_title(fig, title)


def write_figures(folder: Path, table: "pd.DataFrame", summary: "pd.DataFrame", no_rate: Sequence[str],
                  criterion: str, title: str = "", flagged: Sequence[str] = ()) -> None:
    """The three figures of a compare run into `folder` (`plots.figure_formats`); `title` names the data and n,
    `flagged` the tokenizers without a budget signal (so marked in every legend)."""
    from alit_eval.results import plots

    if not plots.drawing():
        return
    plots.save(quality_vs(table, "tokens", title=title, flagged=flagged), folder, "quality_vs_tokens")
    plots.save(quality_vs(table[~table["tokenizer"].isin(no_rate)], "bits_per_image", excluded=no_rate,
                          title=title, flagged=flagged), folder, "quality_vs_bits")
    if len(summary):
        plots.save(matched_tokens(summary, criterion, title=title, flagged=flagged), folder, "matched_tokens")
