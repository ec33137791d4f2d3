"""Figures of the token-allocation analyses (`allocate`, `entropy-correlation`, `familiarity`).

Each function takes the tables those commands write and returns a Figure; nothing here computes a
statistic (shares, buckets, means and correlations are computed in `alit_eval/analysis/`). The
theme is set by the command (`plots.set_theme`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from alit_eval.results.plots import add_title

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def _grid(n: int, width: float = 3.0, height: float = 2.6, max_cols: int = 4):
    import matplotlib.pyplot as plt

    cols = max(1, min(n, max_cols))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def tokens_vs_threshold(summary: "pd.DataFrame", criterion: str, title: str = "") -> "Figure":
    """Mean (95% CI band) and median selected tokens against the threshold; censored share on the right.

    Args:
        summary: ``allocation_summary.csv`` rows (threshold, mean_tokens, mean_tokens_ci_low/high,
            median_tokens, censored_share).
    """
    import matplotlib.pyplot as plt

    d = summary.sort_values("threshold")
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    x = d["threshold"].to_numpy(float)
    ax.plot(x, d["mean_tokens"], marker="o", label="mean")
    ax.fill_between(x, d["mean_tokens_ci_low"].to_numpy(float), d["mean_tokens_ci_high"].to_numpy(float), alpha=0.2)
    ax.plot(x, d["median_tokens"], marker="s", linestyle="--", label="median")
    ax.set_xlabel(f"{criterion} threshold")
    ax.set_ylabel("selected tokens")
    right = ax.twinx()
    right.plot(x, 100 * d["censored_share"].to_numpy(float), color="grey", linestyle=":", marker=".", label="censored")
    right.set_ylabel("censored images (%)")
    right.set_ylim(0, 100)
    right.grid(False)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize="small")
    fig.tight_layout()
    return add_title(fig, title)


def budget_histogram(hist: "pd.DataFrame", title: str = "") -> "Figure":
    """Share of images per selected budget, one panel per threshold (``selected_budgets.csv``)."""
    thresholds = sorted(hist["threshold"].unique())
    fig, axes = _grid(len(thresholds))
    for ax, t in zip(axes, thresholds):
        d = hist[hist["threshold"] == t].sort_values("budget")
        ax.bar([str(b) for b in d["budget"]], 100 * d["share"].to_numpy(float))
        ax.set_title(f"threshold {t:.4g}", fontsize=9)
        ax.set_xlabel("selected tokens")
        ax.set_ylabel("images (%)")
    fig.tight_layout()
    return add_title(fig, title)


def adaptive_vs_fixed(curve: "pd.DataFrame", summary: "pd.DataFrame", metric: str, title: str = "") -> "Figure":
    """Fixed-budget mean quality curve with the adaptive selections (mean tokens, mean quality) on it."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    c = curve.sort_values("budget")
    ax.plot(c["budget"], c["value"], marker="o", label="fixed budget")
    col = f"adaptive_{metric}"
    if col in summary:
        ax.scatter(summary["mean_tokens"], summary[col], color="C3", zorder=3, label="adaptive (per threshold)")
        for r in summary.itertuples():
            ax.annotate(f"{r.threshold:.3g}", (r.mean_tokens, getattr(r, col)), fontsize=7,
                        textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("tokens (mean for adaptive)")
    ax.set_ylabel(f"mean {metric}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return add_title(fig, title)


def image_grid(table: "pd.DataFrame", root: Path, title_cols: Sequence[str], cols: int = 8,
               suptitle: str | None = None) -> "Figure":
    """Images from PNG paths (relative to `root`) in a grid, each titled with `title_cols` values."""
    import matplotlib.pyplot as plt
    from PIL import Image

    n = len(table)
    ncols = max(1, min(cols, n))
    nrows = max(1, -(-n // ncols))
    top_band = 0.2 + 0.15 * suptitle.count("\n") + 0.15 if suptitle else 0.05  # inches above the first row's titles
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.45 * ncols, 1.85 * nrows + top_band), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat:
        ax.axis("off")
    for ax, r in zip(flat, table.to_dict("records")):
        path = Path(root) / r["path"]
        if path.is_file():
            ax.imshow(Image.open(path))
        parts = []
        for c in title_cols:
            v = r[c]
            parts.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        ax.set_title("\n".join(parts), fontsize=6)
    if suptitle:
        fig.suptitle(suptitle, fontsize=8)
    # Fixed spacing instead of tight_layout, which lets two-line titles run into the row above.
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - (top_band + 0.3) / fig.get_figheight(),
                        wspace=0.08, hspace=0.4)
    return fig


def gallery(table: "pd.DataFrame", root: Path, metric: str, threshold: float, title: str = "") -> "Figure":
    """Originals sorted by selected budget (``gallery/gallery.csv``), titled with budget and quality."""
    labels = table["tokens_label"] if "tokens_label" in table else [f"{b} tok" for b in table["selected_budget"]]
    t = table.assign(tokens=list(labels), quality=[f"{metric} {v:.3g}" for v in table[metric]])
    return image_grid(t, root, ["tokens", "quality"],
                      suptitle=(f"{title}\n" if title else "") + f"sorted by selected budget at {metric} threshold "
                               f"{threshold:.4g}; censored = never reaches it")


def complexity_heatmap(cells: "pd.DataFrame", measure: str, title: str = "") -> "Figure":
    """Share of each complexity bucket's images per selected budget (rows sum to 100%).

    Args:
        cells: ``heatmap.csv``: complexity_bucket (ordered label), selected_budget, share, n_bucket.
    """
    import matplotlib.pyplot as plt

    wide = cells.pivot(index="complexity_bucket", columns="selected_budget", values="share").fillna(0.0)
    order = list(dict.fromkeys(cells.sort_values("bucket_order")["complexity_bucket"]))
    wide = wide.loc[order]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * wide.shape[1], 0.9 + 0.45 * wide.shape[0]))
    im = ax.imshow(100 * wide.to_numpy(float), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(wide.shape[1]), [str(c) for c in wide.columns])
    ax.set_yticks(range(wide.shape[0]), list(wide.index))
    for i in range(wide.shape[0]):
        for j in range(wide.shape[1]):
            v = 100 * wide.iat[i, j]
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 55 else "black")
    ax.set_xlabel("selected tokens")
    ax.set_ylabel(f"{measure} bucket")
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="images in bucket (%)")
    fig.tight_layout()
    return add_title(fig, title)


def measure_boxplots(long: "pd.DataFrame", title: str = "") -> "Figure":
    """Box plot of each complexity measure per selected budget (columns measure, value, selected_budget)."""
    measures = list(dict.fromkeys(long["measure"]))
    fig, axes = _grid(len(measures))
    for ax, m in zip(axes, measures):
        d = long[long["measure"] == m]
        budgets = sorted(d["selected_budget"].unique())
        ax.boxplot([d.loc[d["selected_budget"] == b, "value"].to_numpy(float) for b in budgets],
                   tick_labels=[str(int(b)) for b in budgets], flierprops={"markersize": 2})
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("selected tokens")
        ax.set_ylabel("")
    fig.tight_layout()
    return add_title(fig, title)


def measure_vs_error(long: "pd.DataFrame", error: str = "l1", title: str = "") -> "Figure":
    """Scatter of each measure against the per-image error, coloured by budget.

    Args:
        long: columns measure, value, budget and `error`.
    """
    import matplotlib.pyplot as plt

    measures = list(dict.fromkeys(long["measure"]))
    budgets = sorted(long["budget"].unique())
    cmap = plt.get_cmap("viridis", max(len(budgets), 2))
    fig, axes = _grid(len(measures))
    for ax, m in zip(axes, measures):
        d = long[long["measure"] == m]
        for k, b in enumerate(budgets):
            s = d[d["budget"] == b]
            ax.scatter(s["value"], s[error], s=5, alpha=0.6, color=cmap(k), label=str(b))
        ax.set_title(m, fontsize=9)
        ax.set_ylabel(error)
    if axes:
        axes[0].legend(title="tokens", fontsize=6, title_fontsize=7, markerscale=2)
    fig.tight_layout()
    return add_title(fig, title)


def group_labels(table: "pd.DataFrame", group: str = "dataset") -> dict[str, str]:
    """Axis label per group naming its censored images: ``"ood\n3/20 censored"`` (no note without any)."""
    cens = table["censored"].astype(bool) if "censored" in table else None
    out = {}
    for name, d in table.groupby(group, sort=False):
        k = int(cens.loc[d.index].sum()) if cens is not None else 0
        out[str(name)] = f"{name}\n{k}/{len(d)} censored" if k else str(name)
    return out


def required_tokens_by_group(table: "pd.DataFrame", group: str = "dataset", title: str = "") -> "Figure":
    """Violin (with quartiles) of the selected budget per group over the images that reach the threshold,
    one panel per threshold; censored images (never reaching it) are not drawn at any budget but counted
    in the group's axis label (`group_labels`).

    Args:
        table: columns threshold, selected_budget, `group` and (optional) censored.
    """
    import seaborn as sns

    thresholds = sorted(table["threshold"].unique())
    fig, axes = _grid(len(thresholds), width=3.6)
    order = [str(g) for g in dict.fromkeys(table[group].astype(str))]
    for ax, t in zip(axes, thresholds):
        d = table[table["threshold"] == t].assign(**{group: lambda x: x[group].astype(str)})
        labels = group_labels(d, group)
        reached = d[~d["censored"].astype(bool)] if "censored" in d else d
        sns.violinplot(data=reached, x=group, y="selected_budget", ax=ax, inner="quartile", cut=0,
                       density_norm="width", order=order)
        ax.set_xticks(range(len(order)), [labels.get(g, g) for g in order])
        ax.set_title(f"threshold {t:.4g}", fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("required tokens")
        ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    fig.tight_layout()
    return add_title(fig, title)


def curves_by_group(curves: "pd.DataFrame", group: str, metric: str = "l1", title: str = "") -> "Figure":
    """Mean `metric` against tokens, one line per group value (e.g. per probe kind), with CI bands.

    Args:
        curves: columns `group`, budget, value, ci_low, ci_high.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.4, 3.2))
    for name, d in curves.groupby(group, sort=True):
        d = d.sort_values("budget")
        x = d["budget"].to_numpy(float)
        ax.plot(x, d["value"], marker="o", label=str(name))
        if d["ci_low"].notna().any():
            ax.fill_between(x, d["ci_low"].to_numpy(float), d["ci_high"].to_numpy(float), alpha=0.15)
    ax.set_xlabel("tokens")
    ax.set_ylabel(f"mean {metric}")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return add_title(fig, title)
