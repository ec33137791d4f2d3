"""Figures about what tokens mean: probe accuracy, token selection, attention maps, object discovery.

Like `alit_eval.results.plots`, every function takes tables (or ready-made arrays for image panels)
and returns a Figure; nothing here computes a metric. Attention maps arrive already upsampled and
min-max normalised (`alit_eval.analysis.attention_maps.overlay_maps`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from alit_eval.results.plots import add_title

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

KIND_ORDER = ("latent", "codes", "codes-flat", "2d", "2d+first", "base2d")


def _with_condition(metrics: "pd.DataFrame") -> "pd.DataFrame":
    import pandas as pd

    from alit_eval.results.schema import parse_condition

    cond = pd.DataFrame([parse_condition(c) for c in metrics["condition"]], index=metrics.index)
    return pd.concat([metrics, cond], axis=1)


def _curve(ax: Any, d: "pd.DataFrame", **style: Any) -> None:
    d = d.sort_values("budget")
    x = d["budget"].astype(float).to_numpy()
    ax.plot(x, d["value"].to_numpy(float), marker="o", markersize=3, **style)
    if d["ci_low"].notna().any():
        ax.fill_between(x, d["ci_low"].to_numpy(float), d["ci_high"].to_numpy(float), alpha=0.15,
                        color=ax.lines[-1].get_color())


def probe_accuracy_vs_tokens(metrics: "pd.DataFrame", title: str = "") -> "Figure":
    """Top-1 (and top-5) probe accuracy against tokens: one curve per feature kind, the
    reconstruction view dashed, budget-free kinds and chance levels as horizontal lines.

    Args:
        metrics: rows of a downstream ``metrics.csv``.
    """
    import matplotlib.pyplot as plt

    m = _with_condition(metrics)
    panels = [k for k in ("top1", "top5") if (m["metric"] == k).any()]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], panels):
        d = m[m["metric"] == metric]
        kinds = [k for k in KIND_ORDER if k in set(d.get("feature", []))]
        for kind in kinds:
            dk = d[(d["feature"] == kind) & (d["view"] == "tokens")]
            if dk["budget"].isna().all():
                ax.axhline(float(dk["value"].iloc[0]), linestyle="-.", color="grey", linewidth=1, label=f"{kind}")
            else:
                _curve(ax, dk, label=kind)
        rec = d[d["view"] == "reconstruction"]
        if len(rec):
            _curve(ax, rec, label="latent of reconstruction", linestyle="--", color="black")
        for name, style in (("chance_majority", ":"), ("chance_uniform", (0, (1, 4)))):
            c = m[m["metric"] == name]
            if len(c) and metric == "top1":
                ax.axhline(float(c["value"].iloc[0]), linestyle=style, color="tab:red", linewidth=1,
                           label=name.replace("_", " "))
        ax.set_xlabel("tokens")
        ax.set_ylabel(f"{metric} accuracy (held-out)")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize="x-small", loc="best")
    fig.tight_layout()
    return add_title(fig, title)


def regression_vs_tokens(metrics: "pd.DataFrame", title: str = "") -> "Figure":
    """Ridge-probe R² against tokens, one panel per target, one curve per feature kind."""
    import matplotlib.pyplot as plt

    m = _with_condition(metrics)
    d = m[m["metric"] == "r2"]
    targets = list(dict.fromkeys(d["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.2), squeeze=False)
    for ax, target in zip(axes[0], targets):
        dt = d[d["target"] == target]
        for kind in [k for k in KIND_ORDER if k in set(dt["feature"])]:
            dk = dt[dt["feature"] == kind]
            if dk["budget"].isna().all():
                ax.axhline(float(dk["value"].iloc[0]), linestyle="-.", color="grey", linewidth=1, label=kind)
            else:
                _curve(ax, dk, label=kind)
        ax.axhline(0.0, color="black", linewidth=0.5)
        ax.set_xlabel("tokens")
        ax.set_ylabel(f"R² ({target}, held-out)")
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    return add_title(fig, title)


def selected_tokens_hist(per_image: "pd.DataFrame", columns: Sequence[str], budgets: Sequence[int],
                         fallback: Mapping[str, str] | None = None, title: str = "") -> "Figure":
    """Bars of how many images each criterion assigns to each budget (plus "never").

    Args:
        per_image: one row per image with ``selected_tokens_<criterion>`` columns (NaN = never).
        columns: the columns to draw, one panel each.
        budgets: the budgets, in order, for the x axis.
        fallback: column -> a 0/1 column marking images the criterion assigned by its fallback
            (drawn hatched on top of the bar).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(columns), figsize=(3.6 * len(columns), 3.0), squeeze=False, sharey=True)
    titles = {"l1": "reconstruction L1 < threshold", "probe": "probe correct (tokens)",
              "recon_probe": "probe correct (reconstruction)"}
    for ax, col in zip(axes[0], columns):
        v = per_image[col].to_numpy(float)
        fb = np.zeros(len(v), bool)
        if fallback and col in fallback and fallback[col] in per_image:
            fb = per_image[fallback[col]].to_numpy(float) > 0.5
        names = [str(b) for b in budgets] + ["never"]
        met = [int(np.sum((v == b) & ~fb)) for b in budgets] + [int(np.isnan(v).sum())]
        fell = [int(np.sum((v == b) & fb)) for b in budgets] + [0]
        ax.bar(range(len(names)), met, color=["tab:blue"] * len(budgets) + ["tab:grey"])
        if any(fell):
            ax.bar(range(len(names)), fell, bottom=met, color="white", edgecolor="tab:blue", hatch="///",
                   label="fallback (no budget met it)")
            ax.legend(fontsize="x-small")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_xlabel("selected tokens")
        ax.set_title(titles.get(col.removeprefix("selected_tokens_"), col), fontsize=9)
    axes[0][0].set_ylabel("images")
    fig.tight_layout()
    return add_title(fig, title)


MAX_WIDTH_IN = 12.8  # attention pages: at most ~1920 px wide at the 150 dpi of `plots.save` (plus the colour bar label)


def argmax_colours(labels: "np.ndarray", top: int = 8) -> tuple["np.ndarray", list[int]]:
    """Colour indices for an argmax map: the `top` tokens by area get 0..top-1, every other token `top`.

    Returns the ``[H, W]`` colour-index map and the tokens in colour order (largest area first).
    """
    import numpy as np

    ids, counts = np.unique(labels, return_counts=True)
    order = [int(t) for t in ids[np.argsort(-counts, kind="stable")][:top]]
    colour = np.full(labels.shape, top, dtype=np.int64)
    for k, t in enumerate(order):
        colour[labels == t] = k
    return colour, order


def attention_grid(image: "np.ndarray", maps: Mapping[int, "np.ndarray"], tokens: Sequence[int],
                   argmax: Mapping[int, "np.ndarray"], recons: Mapping[int, "np.ndarray"] | None = None,
                   title: str = "", alpha: float = 0.4, panel: float = 1.05,
                   dropped: Mapping[int, Sequence[int]] | None = None) -> "Figure":
    """Rows = budgets; columns = image, (reconstruction), argmax map + its legend, one overlay per token.

    The argmax map colours the 8 tokens that own the most pixels in that row (legend beside it,
    largest first) and greys the rest; a colour bar explains the jet overlay.

    Args:
        image: uint8 ``[H, W, 3]`` preprocessed input.
        maps: budget -> ``[n_tokens_at_budget, H, W]`` in [0, 1]; tokens beyond it are marked absent.
        tokens: token indices, one column each (one page of them).
        argmax: budget -> ``[H, W]`` int, the token each pixel attends to most.
        recons: budget -> uint8 ``[H, W, 3]`` reconstruction, drawn beside the maps when given.
        title: figure title (may hold a line break).
        alpha: opacity of the jet map over the image (0.4 in the published figures).
        panel: side of one image panel in inches (1.05 in = 158 px at 150 dpi).
        dropped: budget -> the token slots the model dropped itself (KARL's halted slots): their
            panels get a red frame and a "dropped" label (the decoder never received them).
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    budgets = sorted(maps)
    lead = ["image"] + (["reconstruction"] if recons else []) + ["argmax token"]
    widths = [1.0] * len(lead) + [0.75] + [1.0] * len(tokens) + [0.12]
    panel = min(panel, (MAX_WIDTH_IN - 0.5) / (1.06 * sum(widths)))  # a page stays under ~2000 px at 150 dpi
    height = panel * 1.12 * len(budgets) + 0.75
    fig = plt.figure(figsize=(panel * 1.06 * sum(widths) + 0.5, height))
    grid = fig.add_gridspec(len(budgets), len(widths), width_ratios=widths, wspace=0.06, hspace=0.12,
                            left=0.04, right=0.96, bottom=0.01, top=1.0 - 0.72 / height)
    top = 8
    # tab10 without its grey (index 7), so that no token shares the colour of "other"
    palette = ListedColormap([plt.get_cmap("tab10")(k) for k in (0, 1, 2, 3, 4, 5, 6, 8)] + [(0.85, 0.85, 0.85, 1.0)])
    for r, b in enumerate(budgets):
        row = [fig.add_subplot(grid[r, c]) for c in range(len(widths) - 1)]
        for ax in row:
            _bare(ax)
        row[0].imshow(image)
        row[0].set_ylabel(f"{b} tokens", fontsize=8)
        c = 1
        if recons:
            row[c].imshow(recons[b])
            c += 1
        _argmax_panel(row[c], row[c + 1], argmax[b], palette, top)
        for j, t in enumerate(tokens):
            ax = row[len(lead) + 1 + j]
            _token_panel(ax, image, maps[b], t, b, alpha, bool(dropped) and t in set(dropped.get(b, ())))
            if r == 0:
                ax.set_title(f"token {t}", fontsize=8)
        if r == 0:
            for k, name in enumerate(lead):
                row[k].set_title(name, fontsize=8)
    _jet_colorbar(fig, fig.add_subplot(grid[:, -1]))
    if title:
        fig.suptitle(title, fontsize=9, y=1.0 - 0.08 / height, va="top")
    return fig


def _jet_colorbar(fig: "Figure", bar: "Axes") -> None:
    """The colour bar that explains the jet overlay (0..1, min-max per map)."""
    import matplotlib.pyplot as plt

    mappable = plt.cm.ScalarMappable(cmap="jet", norm=plt.Normalize(0.0, 1.0))
    cb = fig.colorbar(mappable, cax=bar)
    cb.set_label("attention to the token (min-max per map)", fontsize=7)
    cb.ax.tick_params(labelsize=6)


def _bare(ax: "Axes") -> None:
    """No ticks and no frame: the panel is an image."""
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _argmax_panel(ax: "Axes", legend: "Axes", argmax: "np.ndarray", palette: Any, top: int) -> None:
    """The argmax map in `ax` (the `top` largest tokens coloured, the rest grey) and its legend."""
    from matplotlib.patches import Patch

    colour, order = argmax_colours(argmax, top)
    ax.imshow(colour, cmap=palette, vmin=0, vmax=top, interpolation="nearest")
    legend.axis("off")
    handles = [Patch(color=palette(k), label=f"t{t}") for k, t in enumerate(order)]
    if len(order) == top:
        handles.append(Patch(color=palette(top), label="other"))
    legend.legend(handles=handles, loc="center left", fontsize=6.5, frameon=False, handlelength=0.9,
                  handletextpad=0.25, labelspacing=0.25, columnspacing=0.5, borderaxespad=0.0, ncol=2)


def _token_panel(ax: "Axes", image: "np.ndarray", maps: "np.ndarray", t: int, budget: int, alpha: float,
                 dropped: bool) -> None:
    """Token `t`'s map over the image, "not in N tokens" where the budget lacks it, a red frame if dropped."""
    if t < len(maps):
        ax.imshow(image)
        ax.imshow(maps[t], cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
    else:  # the token does not exist yet at this budget
        ax.text(0.5, 0.5, f"not in\n{budget} tokens", ha="center", va="center", fontsize=6, color="0.55",
                transform=ax.transAxes)
    if dropped:  # a slot the decoder never received
        for side in ax.spines.values():
            side.set_visible(True)
            side.set_color("red")
            side.set_linewidth(1.5)
        ax.text(0.03, 0.04, "dropped", fontsize=6, color="red", transform=ax.transAxes,
                bbox={"facecolor": "white", "alpha": 0.7, "pad": 1, "edgecolor": "none"})


def discovery_vs_tokens(metrics: "pd.DataFrame", title: str = "") -> "Figure":
    """FG-ARI and mIoU against tokens: one curve per decoder layer, grid baselines dashed/dotted."""
    import matplotlib.pyplot as plt

    m = _with_condition(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.2), squeeze=False)
    for ax, metric, label in zip(axes[0], ("fg_ari", "miou"), ("FG-ARI", "mIoU (Hungarian)")):
        d = m[m["metric"] == metric]
        tok = d[d["method"] == "tokens"]
        for layer in sorted(set(tok["layer"]), key=int):
            _curve(ax, tok[tok["layer"] == layer], label=f"tokens, layer {layer}")
        grid = d[d["method"] == "grid"]
        if len(grid):
            _curve(ax, grid, label="grid (N cells)", linestyle="--", color="black")
        used = d[d["method"] == "grid-used"]
        for layer in sorted(set(used["layer"]), key=int)[-1:]:
            _curve(ax, used[used["layer"] == layer], label=f"grid (used tokens, layer {layer})", linestyle=":",
                   color="grey")
        ax.set_xlabel("tokens")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    return add_title(fig, title)


def discovery_examples(images: Sequence["np.ndarray"], masks: Sequence["np.ndarray"],
                       segments: Sequence["np.ndarray"], titles: Sequence[str] = ()) -> "Figure":
    """Rows = images; columns = image, ground-truth instances (background black), token segments.

    Args:
        images: uint8 ``[H, W, 3]`` each; masks: int ``[H, W]`` instance ids (0 = background);
        segments: int ``[H, W]`` token ids; titles: one line per image (e.g. its scores).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(images), 3, figsize=(4.2, 1.45 * len(images) + 0.3), squeeze=False)
    for r, (img, mask, seg) in enumerate(zip(images, masks, segments)):
        axes[r][0].imshow(img, interpolation="nearest")
        axes[r][1].set_facecolor("black")
        axes[r][1].imshow(np.ma.masked_equal(mask, 0) % 20, cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
        axes[r][2].imshow(seg % 20, cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
        if r < len(titles):
            axes[r][1].set_title(titles[r], fontsize=6)
    for ax, name in zip(axes[-1], ("image", "instances", "token argmax")):
        ax.set_xlabel(name, fontsize=7)
    fig.tight_layout(pad=0.2)
    return fig
