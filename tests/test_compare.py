"""`alit-eval compare`: paired tests and matched-threshold tokens against naive recomputations, budget
subsets reported as absent, and the command end to end through the CLI (two tiny ALITs; ALIT vs KARL fixtures)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from alit_eval.analysis.compare import assign_labels, parse_tokenizers, split_budgets
from alit_eval.analysis.paired import matched_tokens, paired_compare
from alit_eval.cli.app import app, main
from alit_eval.errors import AlitEvalError
from conftest import make_tiny_alit, shared_dir


def naive_wilcoxon(d: np.ndarray) -> tuple[float, float]:
    """min(W+, W-) and its exact two-sided p-value by enumerating every sign pattern (no ties, no zeros)."""
    d = d[d != 0]
    ranks = np.argsort(np.argsort(np.abs(d))) + 1.0
    total = ranks.sum()
    w_plus = ranks[d > 0].sum()
    stat = min(w_plus, total - w_plus)
    hits = 0
    for signs in itertools.product((0, 1), repeat=len(d)):
        wp = float(np.dot(signs, ranks))
        hits += min(wp, total - wp) <= stat
    return stat, hits / 2 ** len(d)


def test_paired_compare_against_enumeration_and_bootstrap():
    rng = np.random.default_rng(3)
    a = rng.normal(0.3, 0.05, 9)
    b = a + np.array([0.031, -0.004, 0.022, 0.017, 0.041, -0.012, 0.026, 0.009, 0.035])  # distinct |d|: no ties
    c = paired_compare(a, b, n_boot=400, seed=1)
    stat, p = naive_wilcoxon(b - a)
    assert c.n == c.n_nonzero == 9
    assert c.statistic == pytest.approx(stat) and c.p_value == pytest.approx(p)
    assert c.diff == pytest.approx(np.mean(b - a)) and c.ci_low < c.diff < c.ci_high
    # paired bootstrap: resample images, so the CI is the mean-of-differences CI
    idx = np.random.default_rng(1).integers(0, 9, size=(400, 9))
    means = (b - a)[idx].mean(axis=1)
    assert c.ci_low == pytest.approx(np.quantile(means, 0.025))
    assert c.ci_high == pytest.approx(np.quantile(means, 0.975))
    same = paired_compare(a, a.copy(), n_boot=0)
    assert (same.diff, same.p_value, same.n_nonzero) == (0.0, 1.0, 0)
    gap = paired_compare([1.0, np.nan, 3.0], [2.0, 5.0, np.inf], n_boot=0)
    assert gap.n == 1  # only pairs with both values finite


def _per_image(values: np.ndarray, budgets: list[int]) -> pd.DataFrame:
    n = values.shape[0]
    return pd.DataFrame({"image_id": np.repeat([f"im{i}" for i in range(n)], len(budgets)),
                         "index": np.repeat(np.arange(n), len(budgets)), "budget": np.tile(budgets, n),
                         "l1": values.reshape(-1)})


def test_matched_tokens_against_a_naive_loop():
    rng = np.random.default_rng(0)
    budgets = {"x": [32, 64, 128, 256], "y": [1, 2, 4, 8, 16, 32, 64, 128, 256]}
    tables = {k: _per_image(np.sort(rng.uniform(0.02, 0.2, (12, len(b))), axis=1)[:, ::-1], b)
              for k, b in budgets.items()}
    sel, summary = matched_tokens(tables, [("0.08", 0.08), ("0.05", 0.05)], n_boot=100, seed=0)
    for (name, thr), row in summary.set_index(["tokenizer", "threshold"]).iterrows():
        t = tables[name]
        need, cens = [], 0
        for _, g in t.groupby("image_id"):
            ok = g[g["l1"] < thr].sort_values("budget")
            need.append(int(ok["budget"].iloc[0]) if len(ok) else max(budgets[name]))
            cens += not len(ok)
        assert row["mean_tokens"] == pytest.approx(np.mean(need)) and row["n_censored"] == cens
        assert row["median_tokens"] == pytest.approx(np.median(need))
        assert row["censored_share"] == pytest.approx(cens / 12) and row["max_budget"] == max(budgets[name])
        # min-error fallback: a censored image's quality is its lowest L1 (its selected budget is not the largest)
        want = [float(g.loc[g["budget"] == n, "l1"].iloc[0]) if (g["l1"] < thr).any() else float(g["l1"].min())
                for n, (_, g) in zip(need, t.groupby("image_id"))]
        assert row["l1_selected"] == pytest.approx(np.mean(want))
    assert set(sel.columns) >= {"tokenizer", "image_id", "required_tokens", "censored"}


def test_budget_subsets_labels_and_bad_input():
    assert split_budgets("32,48,64", range(32, 257, 32)) == ([32, 64], [48])
    assert split_budgets("1,2,4,...", range(1, 257)) == ([1, 2, 4, 8, 16, 32, 64, 128, 256], [])
    assert split_budgets("1,2,4,...", range(32, 257, 32)) == ([32, 64, 128, 256], [1, 2, 4, 8, 16])
    assert split_budgets("all", [4, 8]) == ([4, 8], [])
    assert split_budgets(None, [4, 8]) == (None, [])
    specs = parse_tokenizers(["a=x.pth", "dir/y.pth", "z.pth"], ["a=karl"])
    assert [(s.label, s.ckpt, s.family) for s in specs] == [("a", "x.pth", "karl"), (None, "dir/y.pth", None),
                                                             (None, "z.pth", None)]
    assert assign_labels(specs, ["x", "checkpoint", "checkpoint"], ["alit", "alit", "karl"]) == [
        "a", "alit-checkpoint", "karl-checkpoint"]
    assert parse_tokenizers(["a=x", "b=y"], heads=["b=4"])[1].heads == 4
    for ckpts, fams, heads in ((["only.pth"], [], []), (["a=x", "a=y"], [], []), (["x", "y"], ["nope=karl"], []),
                               (["x", "y"], ["karl"], []), (["a=x", "b=y"], [], ["b=four"])):
        with pytest.raises(AlitEvalError):
            parse_tokenizers(ckpts, fams, heads)


@pytest.fixture(scope="module")
def two_tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("two")
    return make_tiny_alit(d / "a.safetensors", seed=0), make_tiny_alit(d / "b.safetensors", seed=1)


@pytest.mark.figures
def test_cli_compare_tiny_end_to_end_naive_checks_and_resume(two_tiny, tmp_path):
    a, b = two_tiny
    args = ["--results-dir", str(tmp_path), "--device", "cpu", "compare", "--ckpt", str(a), "--ckpt", f"bb={b}",
            "--data", "demo-scenes", "--limit", "6", "--no-fid", "--budgets", "4,8,12,20", "--n-boot", "50",
            "--thresholds", "auto,q0.25", "--run-id", "t"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "a lacks 20; bb lacks 20" in res.output
    folder = tmp_path / "compare" / "t"
    for name in ("metrics.csv", "compare.csv", "matched_tokens.csv", "paired_tests.csv", "selection.parquet",
                 "per_image.parquet", "meta.json", "sweeps/a/per_image.parquet", "sweeps/bb/config.json",
                 "figures/quality_vs_tokens.png", "figures/quality_vs_bits.png", "figures/matched_tokens.png"):
        assert (folder / name).is_file(), name
    table = pd.read_csv(folder / "compare.csv")
    absent = table[table["budget"] == 20]
    assert len(absent) and (absent["status"] == "absent").all() and absent["value"].isna().all()
    assert (table.loc[table["budget"] != 20, "status"] == "measured").all()
    assert (table["bits_per_image"].dropna() == table["tokens"].dropna() * 6.0).all()  # 64 codes = 6 bits
    metrics = pd.read_csv(folder / "metrics.csv", keep_default_na=False)
    assert not (metrics["budget"].astype(str) == "20").any()  # absent: no metric row at all
    # naive recomputation from the two sweeps: required tokens per image and the paired test
    pa = pd.read_parquet(folder / "sweeps" / "a" / "per_image.parquet")
    pb = pd.read_parquet(folder / "sweeps" / "bb" / "per_image.parquet")
    summary = pd.read_csv(folder / "matched_tokens.csv")
    tests = pd.read_csv(folder / "paired_tests.csv")
    for thr in summary["threshold"].unique():
        need = {}
        for name, t in (("a", pa), ("bb", pb)):
            need[name] = np.array([int(g.loc[g["l1"] < thr, "budget"].min()) if (g["l1"] < thr).any() else 12
                                   for _, g in t.sort_values("image_id").groupby("image_id")], dtype=float)
            row = summary[(summary.tokenizer == name) & np.isclose(summary.threshold, thr)].iloc[0]
            assert row["mean_tokens"] == pytest.approx(need[name].mean())
        t = tests[(tests.quantity == "tokens") & np.isclose(tests.threshold, thr)].iloc[0]
        d = need["bb"] - need["a"]
        assert t["diff"] == pytest.approx(d.mean())
        if np.count_nonzero(d) and len(set(np.abs(d[d != 0]))) == np.count_nonzero(d):
            assert (t["statistic"], t["p_value"]) == pytest.approx(naive_wilcoxon(d))
    for budget in (4, 8, 12):
        t = tests[(tests.quantity == "l1") & (tests.budget == budget)].iloc[0]
        d = (pb[pb.budget == budget].set_index("image_id")["l1"] - pa[pa.budget == budget].set_index("image_id")["l1"])
        assert t["diff"] == pytest.approx(d.mean()) and t["n_pairs"] == 6
        assert (t["statistic"], t["p_value"]) == pytest.approx(naive_wilcoxon(d.to_numpy()))
    meta = json.loads((folder / "meta.json").read_text())["extra"]
    assert meta["tokenizers"]["a"]["lacking"] == [20] and meta["tokenizers"]["bb"]["budgets"] == [4, 8, 12]
    assert "Wilcoxon" in meta["paired_test"] and meta["reference"] == "a"
    # rerun: every sweep resumes from its sub-folder, nothing is reconstructed again
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    meta2 = json.loads((folder / "meta.json").read_text())["extra"]
    assert {n: t["rollout_calls"] for n, t in meta2["tokenizers"].items()} == {"a": 0, "bb": 0}
    # the report shows the run as one comparison section
    from alit_eval.results.report_html import build_report

    html, md = build_report([folder], out=tmp_path / "rep")
    page = html.read_text()
    for k in range(4):
        assert f'data-table="compare/compare/t/{k}"' in page
    assert "Tokenizer comparison" in page and "absent" in page and "L1 · bb" in page
    assert "lacks 20" in md.read_text()


def test_cli_compare_no_budget_producible(two_tiny, tmp_path, capsys):
    a, b = two_tiny
    with pytest.raises(SystemExit) as exit_info:
        main(["--results-dir", str(tmp_path), "--device", "cpu", "compare", "--ckpt", str(a), "--ckpt", str(b),
              "--data", "demo-scenes", "--limit", "2", "--budgets", "5,7"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "none of --budgets 5,7" in err and "4, 8, ..., 16" in err


FIXTURES = shared_dir() / "fixtures"
ALIT_FIX = FIXTURES / "official_alit" / "vqgan_quantized" / "checkpoint.pth"
KARL_FIX = FIXTURES / "official_karl" / "vqgan_quantized" / "checkpoint.pth"


@pytest.mark.figures
@pytest.mark.skipif(not (ALIT_FIX.is_file() and KARL_FIX.is_file()), reason="official ALIT/KARL fixtures not found")
def test_cli_compare_alit_vs_karl_fixtures(tmp_path):
    res = CliRunner().invoke(app, ["--results-dir", str(tmp_path), "--device", "cpu", "compare", "--ckpt",
                                   str(ALIT_FIX), "--ckpt", str(KARL_FIX), "--data", "demo-scenes", "--limit", "2",
                                   "--batch-size", "2", "--no-fid", "--budgets", "32,48,64", "--n-boot", "20",
                                   "--run-id", "fx"])
    assert res.exit_code == 0, res.output
    assert "alit-checkpoint lacks 48" in res.output
    folder = tmp_path / "compare" / "fx"
    table = pd.read_csv(folder / "compare.csv")
    fam = table.drop_duplicates("tokenizer").set_index("tokenizer")["family"].to_dict()
    assert fam == {"alit-checkpoint": "alit", "karl-checkpoint": "karl"}
    alit48 = table[(table.tokenizer == "alit-checkpoint") & (table.budget == 48)]
    assert (alit48["status"] == "absent").all() and alit48["value"].isna().all()
    karl = table[(table.tokenizer == "karl-checkpoint") & (table.metric == "l1")]
    assert sorted(karl["budget"]) == [32, 48, 64] and (karl["status"] == "measured").all()
    meta = json.loads((folder / "meta.json").read_text())["extra"]
    assert {n: t["family"] for n, t in meta["tokenizers"].items()} == fam
    for name in ("quality_vs_tokens", "quality_vs_bits", "matched_tokens"):
        assert (folder / "figures" / f"{name}.png").is_file()


ODP_FIX = FIXTURES / "official_one_d_piece" / "one_d_piece_tiny" / "pytorch_model.bin"


@pytest.mark.skipif(not (ALIT_FIX.is_file() and ODP_FIX.is_file()),
                    reason="official ALIT/One-D-Piece fixtures not found")
def test_cli_compare_alit_vs_one_d_piece_fixtures(tmp_path):
    # --heads and --halting reach only the tokenizer/family that has them (One-D-Piece has no halting).
    res = CliRunner().invoke(app, ["--results-dir", str(tmp_path), "--device", "cpu", "compare", "--ckpt",
                                   f"alit={ALIT_FIX}", "--ckpt", f"odp={ODP_FIX}", "--heads", "odp=4",
                                   "--halting", "off",
                                   "--data", "demo-scenes", "--limit", "2", "--batch-size", "2", "--no-fid",
                                   "--budgets", "16,32,64", "--n-boot", "20", "--run-id", "fo"])
    assert res.exit_code == 0, res.output
    assert "alit lacks 16" in res.output
    folder = tmp_path / "compare" / "fo"
    meta = json.loads((folder / "meta.json").read_text())["extra"]["tokenizers"]
    assert (meta["alit"]["family"], meta["odp"]["family"]) == ("alit", "one_d_piece")
    assert meta["odp"]["budgets"] == [16, 32, 64] and meta["alit"]["lacking"] == [16]
    configs = json.loads((folder / "config.json").read_text())["tokenizers"]
    assert configs["alit"]["halting"] == "off" and configs["odp"]["checkpoint"]["heads"] == 4
    table = pd.read_csv(folder / "compare.csv")
    odp = table[(table.tokenizer == "odp") & (table.metric == "l1")]
    assert (odp["bits_per_image"] == odp["tokens"] * 12.0).all()  # log2(4096) bits per token


@pytest.mark.figures
def test_tidy_table_continuous_has_no_rate_and_is_left_out_of_the_bits_figure(tmp_path):
    from alit_eval.analysis.compare import tidy_table
    from alit_eval.results import plots, plots_compare
    from alit_eval.results.schema import metrics_frame

    base = {"command": "compare", "dataset": "d", "preprocess": "center-crop", "n": 4}
    rows = [{**base, "budget": b, "metric": m, "value": v, "condition": f"tokenizer={t}"}
            for t, bs in (("vq", (32, 64)), ("cont", (32,))) for b in bs
            for m, v in (("l1", 0.1 - b / 1e4), ("tokens_used", b - 2.0))]
    table = tidy_table(metrics_frame(rows), {"vq": {"family": "alit", "bits_per_token": 12.0},
                                             "cont": {"family": "karl", "bits_per_token": None}},
                       {"vq": [32, 64], "cont": [32]}, [32, 64])
    vq, cont = table[table.tokenizer == "vq"], table[table.tokenizer == "cont"]
    assert list(vq["bits_per_image"]) == [30 * 12.0, 62 * 12.0]  # tokens used, not the nominal budget
    assert cont["bits_per_image"].isna().all() and cont["bits_per_token"].isna().all()
    assert list(cont["status"]) == ["measured", "absent"] and np.isnan(cont["value"].iloc[1])
    plots.set_theme()
    plots_compare.write_figures(tmp_path, table, pd.DataFrame(), ["cont"], "l1")
    assert (tmp_path / "quality_vs_bits.png").is_file() and not (tmp_path / "matched_tokens.png").exists()
