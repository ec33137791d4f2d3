"""Figures drawn from result tables only: each function takes a DataFrame and returns a Figure.

Nothing here computes a metric. The theme is set once by the CLI (`set_theme`), not at import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from alit_eval.metrics import specs

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def _title(metric: str) -> str:
    """A declared metric's label with its unit (``PSNR (dB)``); other names as they are."""
    return specs.spec(metric).axis_label() if metric in specs.TABLE else metric


def set_theme() -> None:
    """The seaborn theme of every figure; set once by the CLI before a command that draws."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid")


def add_title(fig: "Figure", title: str) -> "Figure":
    """Put a run's title (checkpoint, data, n: `alit_eval.results.labels.run_title`) above a figure.

    Figures are saved with ``bbox_inches="tight"``, so a title above the axes is kept whole.
    """
    if title:
        fig.suptitle(title, fontsize=9, y=1.0, va="bottom")
    return fig


MARKERS = ("o", "s", "^", "D", "v", "P")
LINESTYLES = ("-", "--", ":", "-.")


def series_style(k: int) -> dict:
    """Line style of the k-th overlaid series: its own marker and dash, and markers that shrink and
    turn hollow after the first, so identical series lying on top of each other stay visible."""
    style = {"marker": MARKERS[k % len(MARKERS)], "linestyle": LINESTYLES[k % len(LINESTYLES)],
             "markersize": max(7.0 - 1.5 * k, 3.0)}
    if k:
        style["markerfacecolor"] = "none"
    return style


def metrics_vs_tokens(metrics: "pd.DataFrame", metrics_order: Sequence[str] = specs.HEADLINE,
                      hue: str | None = None, title: str = "") -> "Figure":
    """One panel per metric: value (with its 95% CI when present) against the number of tokens.

    Args:
        metrics: rows of ``metrics.csv`` (columns budget, metric, value, ci_low, ci_high).
        hue: optional column whose values become separate curves (e.g. ``dataset``).
    """
    import matplotlib.pyplot as plt

    present = [m for m in metrics_order if m in set(metrics["metric"])]
    fig, axes = plt.subplots(1, max(len(present), 1), figsize=(3.2 * max(len(present), 1), 3.0), squeeze=False)
    groups = [(None, metrics)] if hue is None else list(metrics.groupby(hue, sort=False))
    for ax, m in zip(axes[0], present):
        for k, (name, g) in enumerate(groups):
            d = g[g["metric"] == m].dropna(subset=["budget"]).sort_values("budget")
            x, y = d["budget"].astype(float).to_numpy(), d["value"].to_numpy()
            ax.plot(x, y, label=name, **series_style(k))
            if d["ci_low"].notna().any():
                ax.fill_between(x, d["ci_low"].to_numpy(float), d["ci_high"].to_numpy(float), alpha=0.2)
        ax.set_xlabel("tokens")
        ax.set_title(_title(m))
        if len(groups) > 1:
            ax.legend(fontsize="small")
    fig.tight_layout()
    return add_title(fig, title)


def example_strip(examples: "pd.DataFrame", title: str = "") -> "Figure":
    """A grid of example images: rows = images (named on the left), columns = original then each budget.

    Args:
        examples: columns ``image_id``, ``column`` (``original`` or a budget) and ``path`` (PNG).
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    ids = list(dict.fromkeys(examples["image_id"]))
    cols = list(dict.fromkeys(examples["column"]))
    fig, axes = plt.subplots(len(ids), len(cols), figsize=(1.3 * len(cols), 1.3 * len(ids)), squeeze=False)
    lookup = {(r.image_id, r.column): r.path for r in examples.itertuples()}
    for i, image_id in enumerate(ids):
        for j, col in enumerate(cols):
            ax = axes[i][j]
            ax.axis("off")
            path = lookup.get((image_id, col))
            if path and Path(path).is_file():
                ax.imshow(Image.open(path))
            if i == 0:
                ax.set_title(str(col) if col == "original" else f"{col} tok", fontsize=8)
        name = str(image_id)
        name = name if len(name) <= 28 else "..." + name[-25:]  # the end of a path says most
        axes[i][0].text(-0.06, 0.5, name, transform=axes[i][0].transAxes, ha="right", va="center", fontsize=7)
    fig.tight_layout(pad=0.2)
    return add_title(fig, title)


FIGURE_FORMATS_ENV = "ALIT_EVAL_FIGURE_FORMATS"
DEFAULT_FIGURE_FORMATS = ("png", "pdf")
KNOWN_FIGURE_FORMATS = ("png", "pdf", "svg")


def figure_formats() -> tuple[str, ...]:
    """The file formats of every figure: ``$ALIT_EVAL_FIGURE_FORMATS`` (comma-separated), PNG and PDF by default.

    Each format costs a full render, about as long as drawing the figure; ``png`` alone halves the
    figure time of a command. ``none`` draws no figures at all (the tables are written as always):
    for batch sweeps whose figures nobody looks at, and for the test suite.
    """
    import os

    from alit_eval.errors import AlitEvalError

    raw = os.environ.get(FIGURE_FORMATS_ENV, "").strip()
    if not raw:
        return DEFAULT_FIGURE_FORMATS
    formats = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in raw.split(",") if f.strip()))
    if formats == ("none",):
        return ()
    bad = [f for f in formats if f not in KNOWN_FIGURE_FORMATS]
    if bad or not formats:
        raise AlitEvalError(f"{FIGURE_FORMATS_ENV}={raw!r}: use none or a comma-separated list of "
                            f"{', '.join(KNOWN_FIGURE_FORMATS)} (e.g. png,pdf)")
    return formats


def drawing() -> bool:
    """Whether figures are drawn at all (`figure_formats` is not ``none``); callers skip building them."""
    return bool(figure_formats())


def save(fig: "Figure", folder: Path, name: str, formats: Sequence[str] | None = None) -> list[Path]:
    """Save a figure in each of `formats` (default `figure_formats`; none: nothing) atomically via temp
    names, and close it. Returns the files written."""
    import os

    import matplotlib.pyplot as plt

    out = []
    try:
        for ext in figure_formats() if formats is None else formats:
            path = Path(folder) / f"{name}.{ext}"
            tmp = path.with_name(f".{path.stem}.tmp.{ext}")
            fig.savefig(tmp, dpi=150, bbox_inches="tight",
                        metadata={"CreationDate": None} if ext == "pdf" else None)
            os.replace(tmp, path)
            out.append(path)
    finally:
        plt.close(fig)
    return out
