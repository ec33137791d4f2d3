"""Censored images (never reaching the threshold) are marked in galleries, examples and violins, not
labelled with a budget."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd

from alit_eval.analysis import token_selection as al
from alit_eval.analysis.selection_summary import gallery_table
from alit_eval.analysis.entropy_correlation import example_table
from alit_eval.results import plots_allocation as pa

BUDGETS = [4, 8, 12, 16]
# img1 and img3 never get below 0.07 (censored; min-error fallback picks 12 and 8), img4 only at 16.
L1 = np.array([[0.10, 0.06, 0.05, 0.04], [0.20, 0.15, 0.12, 0.13], [0.05, 0.04, 0.03, 0.02],
               [0.09, 0.08, 0.085, 0.08], [0.30, 0.20, 0.10, 0.069]])


def _selection() -> pd.DataFrame:
    per = pd.DataFrame([{"image_id": f"img{i}", "index": i, "budget": b, "l1": v}
                        for i, row in enumerate(L1) for b, v in zip(BUDGETS, row)])
    return al.selection_table(per, [("0.07", 0.07)], criterion="l1", fallback="min-error")


def test_tokens_label_marks_censored_images():
    sel = _selection()
    assert al.tokens_label(sel, 16) == ["8 tok", "censored (>16 tok)", "4 tok", "censored (>16 tok)", "16 tok"]


def test_gallery_table_carries_the_censored_label():
    g = gallery_table(_selection(), 0.07).set_index("image_id")
    assert g.loc["img1", "tokens_label"] == "censored (>16 tok)" and g.loc["img1", "selected_budget"] == 12
    assert g.loc["img4", "tokens_label"] == "16 tok"


def test_entropy_examples_mark_censored_images():
    sel = _selection()
    measures = pd.DataFrame({"image_id": [f"img{i}" for i in range(5)], "index": range(5),
                             "png_bpp": [1.0, 2.0, 3.0, 4.0, 5.0]})
    ex = example_table(measures, sel, "png_bpp", 0.07, 16, k=5).set_index("image_id")
    assert ex.loc["img3", "tokens_label"] == "censored (>16 tok)" and ex.loc["img0", "tokens_label"] == "8 tok"


def test_violins_count_censored_images_in_the_labels_not_at_the_largest_budget():
    import matplotlib.pyplot as plt

    sel = pd.concat([_selection().assign(dataset="ref"), _selection().assign(dataset="ood").iloc[[0, 2]]])
    assert pa.group_labels(sel, "dataset") == {"ref": "ref\n2/5 censored", "ood": "ood"}
    fig = pa.required_tokens_by_group(sel, "dataset")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ref\n2/5 censored", "ood"]
    plt.close(fig)
