"""Complexity measures, correlation statistics (against scipy and closed forms), external scores, and
`alit-eval entropy-correlation` end to end (layout, numbers recomputed from its own tables, reuse)."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats
from typer.testing import CliRunner

from alit_eval.analysis import complexity as cx
from alit_eval.analysis.correlation import bootstrap_indices, correlation, partial_correlation, percentile_ci
from alit_eval.analysis.entropy_correlation import run as run_entropy
from alit_eval.cli.app import app
from alit_eval.engine.config import SweepConfig
from alit_eval.errors import AlitEvalError


def _gray_image(values: np.ndarray) -> np.ndarray:
    # R = G = B = v makes Pillow's luma exactly v (its weights sum to 1 in fixed point).
    return np.repeat(np.asarray(values, np.uint8)[:, :, None], 3, axis=2)


def test_flat_image_has_no_complexity():
    img = np.full((32, 32, 3), (40, 120, 200), np.uint8)
    assert cx.gray_entropy(img) == 0.0
    assert cx.mean_gradient(img) == 0.0
    assert cx.edge_density(img) == 0.0
    assert cx.hf_energy(img) == 0.0
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for name in ("png_bpp", "jpeg75_bpp", "jpeg95_bpp", "gray_entropy", "mean_gradient", "edge_density", "hf_energy"):
        assert cx.MEASURES[name](noise) > cx.MEASURES[name](img), name


def test_measures_against_direct_computations():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=9)
    assert cx.png_bpp(img) == 8 * len(buf.getvalue()) / (24 * 40)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=75, subsampling="4:2:0")
    assert cx.MEASURES["jpeg75_bpp"](img) == 8 * len(buf.getvalue()) / (24 * 40)
    assert cx.jpeg_bpp(img, 95) > cx.jpeg_bpp(img, 75)
    gray = np.asarray(Image.fromarray(img).convert("L"))
    counts = np.bincount(gray.ravel(), minlength=256)
    assert cx.gray_entropy(img) == pytest.approx(stats.entropy(counts, base=2), abs=1e-12)


def test_gradient_edges_and_spectrum_on_known_patterns():
    ramp = _gray_image(np.tile(np.arange(0, 256, 4), (64, 1)))  # 64x64, +4 per column
    assert cx.mean_gradient(ramp) == pytest.approx(4 / 255)
    half = _gray_image(np.where(np.arange(64) < 32, 0, 255)[None, :].repeat(64, 0))
    assert 0.5 / 64 <= cx.edge_density(half) <= 2.5 / 64  # one vertical edge line
    checker = _gray_image(((np.indices((32, 32)).sum(0) % 2) * 255))  # all energy at (0.5, 0.5) cycles/px
    assert cx.hf_energy(checker) == pytest.approx(1.0)
    x = np.arange(64)
    low = _gray_image(np.round(127.5 + 127.5 * np.cos(2 * np.pi * x / 8))[None, :].repeat(64, 0))  # 0.125 c/px
    high = _gray_image(np.round(127.5 + 127.5 * np.cos(2 * np.pi * 3 * x / 8))[None, :].repeat(64, 0))  # 0.375
    assert cx.hf_energy(low) < 1e-3 and cx.hf_energy(high) > 0.999
    with pytest.raises(ValueError):
        cx.png_bpp(np.zeros((8, 8), np.uint8))


def test_measure_dataset_matches_per_image_measures():
    from alit_eval.data.demo import generate
    from alit_eval.data.sources import open_source

    src = open_source("demo-scenes", size=32, preprocess="resize-center-crop", limit=3)
    table = cx.measure_dataset(src.dataset, batch_size=2)
    assert table["image_id"].tolist() == [f"demo-scenes_{i:06d}" for i in range(3)]
    for i in range(3):
        want = cx.measure_image(generate("demo-scenes", i, size=32).image)
        assert table.iloc[i][list(cx.MEASURES)].to_dict() == pytest.approx(want)


# --- statistics -------------------------------------------------------------------------------

def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    y = 0.6 * x + 0.5 * z + rng.normal(scale=0.8, size=n)
    return x, y, z


@pytest.mark.parametrize("method,fn", [("spearman", stats.spearmanr), ("kendall", stats.kendalltau),
                                       ("pearson", stats.pearsonr)])
def test_correlation_point_p_and_bootstrap_against_scipy(method, fn):
    x, y, _ = _data()
    y = np.round(y, 1)  # ties
    e = correlation(x, y, method, n_boot=300, seed=7)
    ref = fn(x, y)
    assert e.value == pytest.approx(ref.statistic, abs=1e-12) and e.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    naive = [fn(x[i], y[i]).statistic for idx in bootstrap_indices(len(x), 300, 7) for i in idx]
    lo, hi = np.quantile(naive, [0.025, 0.975])
    assert (e.ci_low, e.ci_high) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9))
    assert correlation(x, y, method, n_boot=300, seed=7) == e  # reproducible with a seed
    assert correlation(x, y, method, n_boot=300, seed=8).ci_low != e.ci_low


def test_kendall_bootstrap_on_a_larger_set_uses_scipy_per_resample():
    from alit_eval.analysis.correlation import KENDALL_PAIRWISE_MAX_N

    x, y, _ = _data(KENDALL_PAIRWISE_MAX_N + 30, seed=5)
    e = correlation(x, np.round(y), "kendall", n_boot=40, seed=1)
    naive = [stats.kendalltau(x[i], np.round(y)[i]).statistic for idx in bootstrap_indices(len(x), 40, 1) for i in idx]
    assert (e.ci_low, e.ci_high) == tuple(pytest.approx(q, abs=1e-12) for q in np.quantile(naive, [0.025, 0.975]))


def test_correlation_edge_cases():
    x = np.arange(10.0)
    assert np.isnan(correlation(x, np.ones(10), "spearman", n_boot=20).value)
    e = correlation(np.array([1.0, np.nan, 3, 4, 5]), np.array([2.0, 1, np.inf, 5, 4]), "pearson", n_boot=20)
    assert e.n == 3
    assert np.isnan(correlation(x[:2], x[:2], n_boot=20).value)
    assert percentile_ci(np.array([np.nan, 1.0])) != percentile_ci(np.array([1.0, 2.0]))


def test_partial_correlation_against_the_closed_form():
    x, y, z = _data(60, seed=2)
    for method, tf in (("pearson", lambda v: v), ("spearman", stats.rankdata)):
        a, b, c = tf(x), tf(y), tf(z)
        rxy, rxz, ryz = np.corrcoef(a, b)[0, 1], np.corrcoef(a, c)[0, 1], np.corrcoef(b, c)[0, 1]
        want = (rxy - rxz * ryz) / np.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))
        e = partial_correlation(x, y, z, method, n_boot=100, seed=0)
        assert e.value == pytest.approx(want, abs=1e-10)
        t = want * np.sqrt((60 - 3) / (1 - want ** 2))
        assert e.p_value == pytest.approx(2 * stats.t.sf(abs(t), 57), rel=1e-8)
        assert e.ci_low < e.value < e.ci_high
    # controlling for a variable that fully explains y leaves nothing to correlate: undefined
    assert np.isnan(partial_correlation(x, 2 * z + 1, z, "pearson", n_boot=0).value)
    with pytest.raises(ValueError):
        partial_correlation(x, y, z, "kendall", n_boot=0)


def test_external_scores_matching(tmp_path):
    ids = ["scenes/1.jpg", "scenes/2.jpg", "art/3.png"]
    f = tmp_path / "s.csv"
    f.write_text("image,score\nscenes/1.jpg,10\n2.jpg,20\n3,30\nother.jpg,99\n")
    s = cx.read_scores(str(f), ids)
    assert s.to_dict() == {"scenes/1.jpg": 10.0, "scenes/2.jpg": 20.0, "art/3.png": 30.0}
    f.write_text("image,score\n1.jpg,1\n")
    with pytest.raises(AlitEvalError, match="several"):
        cx.read_scores(str(f), ["a/1.jpg", "b/1.jpg"])
    f.write_text("name,value\n1,2\n")
    with pytest.raises(AlitEvalError, match="columns"):
        cx.read_scores(str(f), ids)
    f.write_text("image,score\nnothing.png,1\n")
    with pytest.raises(AlitEvalError, match="no 'image'"):
        cx.read_scores(str(f), ids)


# --- the command ------------------------------------------------------------------------------

@pytest.mark.figures
def test_cli_entropy_correlation_numbers_layout_and_reuse(tiny_ckpt, tmp_path, monkeypatch):
    runner = CliRunner()
    args = ["--results-dir", str(tmp_path), "--device", "cpu", "entropy-correlation"]
    scores = tmp_path / "scores.csv"
    scores.write_text("image,score\n" + "\n".join(f"demo-scenes_{i:06d}.png,{(i * 7) % 10}" for i in range(10)))
    res = runner.invoke(app, args + ["--ckpt", str(tiny_ckpt), "--limit", "10", "--batch-size", "5",
                                     "--thresholds", "auto,q0.75", "--n-boot", "50", "--control", "png_bpp",
                                     "--scores", str(scores), "--run-id", "e"])
    assert res.exit_code == 0, res.output
    folder = tmp_path / "entropy-correlation" / "e"
    for name in ("metrics.csv", "per_image.parquet", "complexity.parquet", "selection.parquet", "correlations.csv",
                 "heatmap.csv", "meta.json", "figures/complexity_token_heatmap.png",
                 "figures/measures_by_required_tokens.png", "figures/measures_vs_l1.png",
                 "figures/examples_by_required_tokens.png", "examples/examples.csv"):
        assert (folder / name).is_file(), name
    meas = pd.read_parquet(folder / "complexity.parquet")
    sel = pd.read_parquet(folder / "selection.parquet")
    per = pd.read_parquet(folder / "per_image.parquet")
    corr = pd.read_csv(folder / "correlations.csv", keep_default_na=False,
                       na_values={c: [""] for c in ("threshold", "budget", "value", "ci_low", "ci_high", "p_value",
                                                   "n_censored")})
    assert {"complexity", "score", *cx.MEASURES} <= set(meas.columns) and len(meas) == 10
    assert meas["score"].tolist() == [(i * 7) % 10 for i in range(10)]
    # Recompute two rows from the run's own tables with scipy.
    thr = sorted(sel["threshold"].unique())[0]
    s = sel[sel["threshold"] == thr].merge(meas, on="image_id", suffixes=("_sel", ""))
    tokens = np.where(s["censored"], 16, s["selected_budget"])
    row = corr[(corr.measure == "complexity") & (corr.target == "tokens") & (corr.threshold == thr)
               & (corr.censored == "as-max") & (corr.method == "spearman") & (corr.control == "")].iloc[0]
    ref = stats.spearmanr(s["complexity"], tokens)
    assert row["value"] == pytest.approx(ref.statistic, nan_ok=True) and row["n"] == 10
    assert row["n_censored"] == int(s["censored"].sum())
    d = per[per["budget"] == 8].merge(meas, on="image_id")
    row = corr[(corr.measure == "hf_energy") & (corr.target == "l1") & (corr.budget == 8) & (corr.method == "kendall")]
    assert row["value"].item() == pytest.approx(stats.kendalltau(d["hf_energy"], d["l1"]).statistic)
    assert {"", "png_bpp"} == set(corr["control"])
    excluded = corr[(corr.censored == "excluded") & (corr.control == "")]
    assert (excluded["n"] == 10 - excluded["n_censored"]).all()
    m = pd.read_csv(folder / "metrics.csv")
    assert {"spearman_rho", "spearman_rho_p", "kendall_tau", "pearson_r", "partial_spearman_rho",
            "censored_share"} <= set(m["metric"])

    from alit_eval.tokenizers.alit.model import AlitTokenizer

    monkeypatch.setattr(AlitTokenizer, "rollout", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rollout")))
    run_e2, _ = run_entropy(SweepConfig(), from_run=str(folder), thresholds=["auto"], n_boot=20,
                            methods=["spearman"], results_dir=tmp_path, run_id="e2", progress=False, figures=False)
    meta = json.loads((run_e2.path / "meta.json").read_text())
    assert meta["extra"]["rollout_calls"] == 0 and meta["extra"]["primary_measure"] == "complexity"
    res = runner.invoke(app, args + ["--from-run", str(folder), "--control", "nope", "--run-id", "e3"])
    assert res.exit_code != 0 and "not a measure" in str(res.exception)
