"""Figures of cost: compute per token budget (`alit-eval profile`) and rate-distortion curves.

Like every plot module, these take tables and return Figures; they compute nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from alit_eval.results.plots import add_title

from alit_eval.metrics import specs

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

COMPONENT_LABELS = {"base_encoder": "base 2D encoder", "encoder_transformer": "recurrent encoder",
                    "alit_decoder": "latent decoder", "base_decoder": "base 2D decoder", "other": "other"}


def cost_structure(table: "pd.DataFrame", title: str = "") -> "Figure":
    """Left: GFLOPs per image by budget, the rollout stacked by component and the pixel decode of
    that budget beside it. Right: latency per image of the same two stages.

    Args:
        table: the `alit_eval.analysis.flops.compute_table` output.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    roll = table[table["stage"] == "rollout"].sort_values("budget")
    dec = table[table["stage"] == "pixel_decode"].sort_values("budget")
    budgets = roll["budget"].astype(int).to_numpy()
    x = np.arange(len(budgets))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    ax = axes[0]
    bottom = np.zeros(len(budgets))
    # Every gflops_<component> column, in table order (each tokenizer family has its own components).
    comps = [c.removeprefix("gflops_") for c in roll.columns
             if c.startswith("gflops_") and roll[c].notna().any()]
    if comps:
        for c in comps:
            v = roll[f"gflops_{c}"].to_numpy(float)
            ax.bar(x - 0.2, v, 0.4, bottom=bottom, label=f"rollout: {COMPONENT_LABELS.get(c, c.replace('_', ' '))}")
            bottom += v
    else:
        ax.bar(x - 0.2, roll["gflops"].to_numpy(float), 0.4, label="rollout")
    if len(dec):
        ax.bar(x + 0.2, dec["gflops"].to_numpy(float), 0.4, color="0.75", hatch="//", edgecolor="0.4",
               label="pixel decode (per budget)")
    ax.set_xticks(x, [str(b) for b in budgets])
    ax.set_xlabel("tokens")
    ax.set_ylabel("GFLOPs per image")
    ax.set_title("compute: recurrence grows, decoding is per budget")
    ax.legend(fontsize="x-small")
    ax = axes[1]
    if roll["latency_ms"].notna().any():
        ax.plot(budgets, roll["latency_ms"].to_numpy(float), marker="o", label="rollout")
        if len(dec):
            ax.plot(dec["budget"].astype(int), dec["latency_ms"].to_numpy(float), marker="s", linestyle="--",
                    label="pixel decode")
        device = str(roll["device"].iloc[0])
        precision = str(roll["precision"].iloc[0])
        ax.set_title(f"latency (median, {device}, {precision})")
        ax.legend(fontsize="small")
    else:
        ax.set_title("latency not measured")
    ax.set_xlabel("tokens")
    ax.set_ylabel("ms per image")
    fig.tight_layout()
    return add_title(fig, title)


def rate_distortion(points: "pd.DataFrame", curves: "pd.DataFrame",
                    metrics: Sequence[str] = ("l1", "psnr", "ssim", "rfid"), title: str = "") -> "Figure":
    """Distortion against bits per pixel: the tokenizer's budgets, the codecs at the same bits, and
    each codec's own quality sweep.

    Args:
        points: columns method (``tokenizer`` or a codec), budget, bpp, metric, value, reachable:
            one row per method, budget and metric (codec rows are means over the images the codec
            could fit into the budget, a share `reachable` of all; below 1 they are drawn hollow).
        curves: columns codec, quality, bpp and one column per metric (means over images).
        metrics: which panels to draw (those absent from `points` are skipped).
    """
    import matplotlib.pyplot as plt

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    present = [m for m in metrics if m in set(points["metric"])]
    n = max(len(present), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False)
    colors = {"tokenizer": "C0", "jpeg": "C1", "webp": "C2"}
    for ax, m in zip(axes[0], present):
        for method, g in points[points["metric"] == m].groupby("method", sort=False):
            g = g.dropna(subset=["bpp", "value"]).sort_values("bpp")
            if g.empty:
                continue
            color = colors.get(method, None)
            if method == "tokenizer":
                ax.plot(g["bpp"], g["value"], color=color, marker="o", label="tokenizer (budgets)")
                for r in g.itertuples():
                    ax.annotate(str(int(r.budget)), (r.bpp, r.value), fontsize=6, xytext=(2, 2),
                                textcoords="offset points")
                continue
            full = g["reachable"] >= 1.0
            ax.plot(g.loc[full, "bpp"], g.loc[full, "value"], color=color, marker="D", linestyle="",
                    label=f"{method} at the tokenizer's bits")
            if (~full).any():  # a mean over the images the codec can fit: biased towards easy images
                ax.plot(g.loc[~full, "bpp"], g.loc[~full, "value"], color=color, marker="D", linestyle="",
                        markerfacecolor="none", label=f"{method}, only some images fit")
        if m in curves.columns:
            for codec, g in curves.groupby("codec", sort=False):
                g = g.dropna(subset=["bpp", m]).sort_values("bpp")
                ax.plot(g["bpp"], g[m], color=colors.get(codec), linestyle="--", linewidth=1, alpha=0.8,
                        label=f"{codec} quality sweep")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("bits per pixel")
        ax.set_title(specs.spec(m).axis_label(with_direction=True) if m in specs.TABLE else m, fontsize=9)
    if present:
        axes[0][0].legend(fontsize="x-small")
    fig.tight_layout()
    return add_title(fig, title)
