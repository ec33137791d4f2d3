"""Familiarity: group comparisons (against scipy and a naive bootstrap), dataset parsing, comparison
tables, per-probe curves, and `alit-eval familiarity` end to end with reuse of its sweeps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from alit_eval.analysis import familiarity as fam
from alit_eval.analysis.correlation import BOOT_CHUNK, compare_groups
from alit_eval.cli.app import app
from alit_eval.engine.config import SweepConfig
from alit_eval.errors import AlitEvalError


def test_compare_groups_against_scipy_and_a_naive_bootstrap():
    rng = np.random.default_rng(0)
    a = rng.choice([8, 16, 24, 32], size=30).astype(float)
    b = rng.choice([16, 24, 32, 40], size=45).astype(float)
    c = compare_groups(a, b, n_boot=250, seed=3)
    mw = stats.mannwhitneyu(b, a, alternative="two-sided")
    assert c.diff.value == pytest.approx(b.mean() - a.mean())
    assert (c.u, c.p_value) == (mw.statistic, pytest.approx(mw.pvalue, rel=1e-12))
    greater = (b[:, None] > a[None, :]).mean() + 0.5 * (b[:, None] == a[None, :]).mean()
    assert c.effect == pytest.approx(greater)
    g = np.random.default_rng(3)
    reps = []
    for start in range(0, 250, BOOT_CHUNK):
        k = min(BOOT_CHUNK, 250 - start)
        ia, ib = g.integers(0, 30, (k, 30)), g.integers(0, 45, (k, 45))
        reps += list(b[ib].mean(1) - a[ia].mean(1))
    assert (c.diff.ci_low, c.diff.ci_high) == tuple(pytest.approx(q) for q in np.quantile(reps, [0.025, 0.975]))
    assert compare_groups(a, b, n_boot=250, seed=3) == c
    assert compare_groups(a, b, n_boot=250, seed=4).diff.ci_low != c.diff.ci_low
    empty = compare_groups(a, np.array([np.nan]), n_boot=10)
    assert np.isnan(empty.diff.value) and empty.n_b == 0


def test_parse_datasets(tmp_path):
    specs = fam.parse_datasets(["demo-scenes", "ood=demo-unfamiliar", str(tmp_path / "my_photos")])
    assert [(s.name, s.data) for s in specs] == [("demo-scenes", "demo-scenes"), ("ood", "demo-unfamiliar"),
                                                 ("my_photos", str(tmp_path / "my_photos"))]
    with pytest.raises(AlitEvalError, match="two datasets are named"):
        fam.parse_datasets(["demo-scenes", "demo-scenes"])
    with pytest.raises(AlitEvalError, match="at least two"):
        fam.parse_datasets(["demo-scenes"])
    with pytest.raises(AlitEvalError, match="plain word"):
        fam.parse_datasets(["a;b=demo-scenes", "demo-probes"])


def _tables():
    rng = np.random.default_rng(1)
    sel, per = [], []
    for name, shift in (("ref", 0), ("ood", 1), ("same", 0)):
        for i in range(20):
            budget = int(rng.choice([4, 8, 12, 16], p=[0.4, 0.3, 0.2, 0.1] if shift == 0 else [0.1, 0.2, 0.3, 0.4]))
            cens = bool(rng.random() < 0.15)
            sel.append({"dataset": name, "image_id": f"{name}{i}", "threshold": 0.1, "selected_budget": budget,
                        "censored": cens})
            for b in (4, 8, 12, 16):
                per.append({"dataset": name, "image_id": f"{name}/{i}", "budget": b,
                            "l1": 0.2 - 0.005 * b + 0.05 * shift + rng.normal(scale=0.01), "label": f"k{i % 3}"})
    return pd.DataFrame(sel), pd.DataFrame(per)


def test_comparisons_table_against_direct_computation():
    sel, per = _tables()
    comp = fam.comparisons(sel, per, "ref", 16, n_boot=100, seed=0)
    assert set(comp["dataset"]) == {"ood", "same"} and len(comp) == 2 + 2 * 4
    row = comp[(comp["dataset"] == "ood") & (comp["quantity"] == "tokens")].iloc[0]
    req = lambda d: np.where(d["censored"], 16, d["selected_budget"]).astype(float)  # noqa: E731
    a, b = req(sel[sel.dataset == "ref"]), req(sel[sel.dataset == "ood"])
    assert row["diff"] == pytest.approx(b.mean() - a.mean())
    assert row["p_value"] == pytest.approx(stats.mannwhitneyu(b, a).pvalue)
    l1 = comp[(comp["dataset"] == "ood") & (comp["quantity"] == "l1") & (comp["budget"] == 8)].iloc[0]
    pa, pb = (per[(per.dataset == n) & (per.budget == 8)]["l1"] for n in ("ref", "ood"))
    assert l1["diff"] == pytest.approx(pb.mean() - pa.mean()) and l1["ci_low"] < l1["diff"] < l1["ci_high"]
    rows = fam.comparison_rows(comp, reference="ref", criterion="l1", preprocess="generated")
    assert {"token_diff", "token_mannwhitney_p", "l1_diff", "l1_effect"} <= {r["metric"] for r in rows}


def test_group_curves_are_group_means():
    _, per = _tables()
    curves = fam.group_curves(per, "label")
    want = per.groupby(["label", "budget"])["l1"].mean()
    for r in curves.itertuples():
        assert r.value == pytest.approx(want[(r.label, r.budget)]) and r.ci_low <= r.value <= r.ci_high


@pytest.mark.figures
def test_cli_familiarity_end_to_end_and_reuse(tiny_ckpt, tmp_path, monkeypatch):
    runner = CliRunner()
    args = ["--results-dir", str(tmp_path), "--device", "cpu", "familiarity"]
    res = runner.invoke(app, args + ["--ckpt", str(tiny_ckpt), "--data", "demo-scenes", "--data", "ood=demo-unfamiliar",
                                     "--data", "demo-probes", "--limit", "8", "--no-fid", "--n-boot", "50",
                                     "--thresholds", "auto,q0.25", "--run-id", "f"])
    assert res.exit_code == 0, res.output
    folder = tmp_path / "familiarity" / "f"
    for name in ("metrics.csv", "per_image.parquet", "selection.parquet", "comparisons.csv", "probe_curves.csv",
                 "meta.json", "figures/metrics_vs_tokens.png", "figures/required_tokens.png",
                 "figures/probe_curves.png", "sweeps/ood/per_image.parquet", "sweeps/ood/config.json"):
        assert (folder / name).is_file(), name
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["extra"]["reference"] == "demo-scenes"
    assert {n: d["rollout_calls"] for n, d in meta["extra"]["datasets"].items()} == {
        "demo-scenes": 1, "ood": 1, "demo-probes": 1}
    thr = {t["value"] for t in meta["extra"]["thresholds"]}
    ref = pd.read_parquet(folder / "sweeps" / "demo-scenes" / "per_image.parquet")
    assert max(thr) == pytest.approx(ref.loc[ref.budget == 12, "l1"].median())  # resolved on the reference
    probes = pd.read_csv(folder / "probe_curves.csv")
    assert set(probes["kind"]) == {"checker-2", "checker-4", "checker-8", "checker-16", "noise", "fractal",
                                   "flat", "gradient"}
    per = pd.read_parquet(folder / "per_image.parquet")
    assert per["image_id"].str.startswith(("demo-scenes/", "ood/", "demo-probes/")).all()
    comp = pd.read_csv(folder / "comparisons.csv")
    sel = pd.read_parquet(folder / "selection.parquet")
    t0 = sorted(sel["threshold"].unique())[0]
    s = sel[sel["threshold"] == t0]
    a = s.loc[s.dataset == "demo-scenes", "required_tokens"].to_numpy(float)
    b = s.loc[s.dataset == "ood", "required_tokens"].to_numpy(float)
    row = comp[(comp.dataset == "ood") & (comp.quantity == "tokens") & np.isclose(comp.threshold, t0)].iloc[0]
    assert row["diff"] == pytest.approx(b.mean() - a.mean())

    from alit_eval.tokenizers.alit.model import AlitTokenizer

    monkeypatch.setattr(AlitTokenizer, "rollout", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rollout")))
    specs = fam.parse_datasets([], [str(folder)])
    assert [(s.name, s.from_run) for s in specs] == [(n, str(folder / "sweeps" / n))
                                                     for n in ("demo-scenes", "ood", "demo-probes")]
    again, _, _ = fam.run(SweepConfig(), datasets=specs, thresholds=["auto", "q0.25"], n_boot=50,
                          results_dir=tmp_path, run_id="f2", progress=False, figures=False)
    again = again.path
    meta2 = json.loads((again / "meta.json").read_text())
    assert meta2["extra"]["reference"] == "demo-scenes"
    assert all(d["rollout_calls"] == 0 for d in meta2["extra"]["datasets"].values())
    pd.testing.assert_frame_equal(pd.read_csv(again / "comparisons.csv"), comp)


def test_sweeps_of_different_checkpoints_are_not_compared(tmp_path):
    for name, sha in (("a", "1" * 64), ("b", "2" * 64)):
        folder = tmp_path / name
        (folder / "shards").mkdir(parents=True)
        pd.DataFrame({"image_id": ["x"], "index": [0], "budget": [4], "l1": [0.1]}).to_parquet(
            folder / "per_image.parquet")
        (folder / "config.json").write_text(json.dumps({"data": {"source": f"demo-{name}", "kind": "demo"},
                                                        "checkpoint": {"name": "m", "sha256": sha}}))
    specs = fam.parse_datasets([], [f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}"])
    with pytest.raises(AlitEvalError, match="different checkpoints"):
        fam.run(SweepConfig(), datasets=specs, thresholds=["auto"], results_dir=tmp_path / "r", progress=False)
