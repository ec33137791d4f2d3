"""`compare` (and `allocate`) tell one story: one token count, one resolution, a flag when tokens make no difference.

Issue 21, findings 1-6: the tokens of a family that keeps fewer than its budget are the tokens the
decoder receives, everywhere; tokenizers of different image sizes are refused; a tokenizer whose
criterion does not move with the budget is flagged; every report row and figure names what it shows.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from alit_eval.analysis import tokens as received
from alit_eval.analysis.paired import matched_tokens, paired_tests
from alit_eval.cli.app import app, main
from conftest import make_tiny_alit


def _dropping(n: int = 8, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Two per-image tables over the same images: 'full' decodes from its budget, 'drop' from about half of it."""
    rng = np.random.default_rng(seed)
    budgets = [32, 64, 128, 256]
    out = {}
    for name in ("full", "drop"):
        l1 = np.sort(rng.uniform(0.02, 0.2, (n, len(budgets))), axis=1)[:, ::-1]
        t = pd.DataFrame({"image_id": np.repeat([f"im{i}" for i in range(n)], len(budgets)),
                          "index": np.repeat(np.arange(n), len(budgets)), "budget": np.tile(budgets, n),
                          "l1": l1.reshape(-1)})
        t["tokens_used"] = t["budget"] if name == "full" else t["budget"] // 2 - (t["index"] % 3)
        out[name] = t
    return out


def test_matched_tokens_count_the_tokens_the_decoder_receives():
    tables = _dropping()
    sel, summary = matched_tokens(tables, [("0.1", 0.1), ("0.05", 0.05)], n_boot=50, seed=0)
    for (name, thr), row in summary.set_index(["tokenizer", "threshold"]).iterrows():
        t = tables[name]
        need = []
        for _, g in t.groupby("index"):
            ok = g[g["l1"] < thr].sort_values("budget")
            at = ok.iloc[0] if len(ok) else g.sort_values("budget").iloc[-1]  # censored: the largest budget
            need.append(float(at["tokens_used"]))
        assert row["mean_tokens"] == pytest.approx(np.mean(need)), name
    drop = sel[sel["tokenizer"] == "drop"]
    assert (drop["required_tokens"] < drop["required_budget"]).all()
    # the paired test compares the same token counts as the summary
    tests = paired_tests(sel, tables, "full", n_boot=0, seed=0)
    t = tests[tests["quantity"] == "tokens"].set_index("threshold")["mean"]
    s = summary[summary["tokenizer"] == "drop"].set_index("threshold")["mean_tokens"]
    assert np.allclose(t.sort_index().to_numpy(), s.sort_index().to_numpy())


def test_tokens_figure_and_bits_figure_share_one_token_axis(tmp_path):
    from alit_eval.analysis.compare import tidy_table
    from alit_eval.results import plots, plots_compare
    from alit_eval.results.schema import metrics_frame

    base = {"command": "compare", "dataset": "d", "preprocess": "center-crop", "n": 4}
    rows = [{**base, "budget": b, "metric": m, "value": v, "condition": "tokenizer=karl",
             **({"ci_low": v - 0.01, "ci_high": v + 0.01} if m == "l1" else {})}
            for b in (64, 128, 256) for m, v in (("l1", 0.3 - b / 1e4), ("tokens_used", b / 2.4))]
    rows += [{**base, "budget": b, "metric": "l1", "value": 0.2, "ci_low": 0.19, "ci_high": 0.21,
              "condition": "tokenizer=odp"} for b in (64, 256)]
    table = tidy_table(metrics_frame(rows), {"karl": {"family": "karl", "bits_per_token": 12.0},
                                             "odp": {"family": "one_d_piece", "bits_per_token": 12.0}},
                       {"karl": [64, 128, 256], "odp": [64, 256]}, [64, 128, 256])
    plots.set_theme()
    tok = plots_compare.quality_vs(table, "tokens", title="compare: karl on d (n=4)", flagged=["odp"])
    bits = plots_compare.quality_vs(table, "bits_per_image", title="compare: karl on d (n=4)")
    x_tok = tok.axes[0].lines[0].get_xdata()
    x_bits = bits.axes[0].lines[0].get_xdata()
    assert np.allclose(x_tok, [64 / 2.4, 128 / 2.4, 256 / 2.4])  # not the nominal budgets
    assert np.allclose(np.asarray(x_bits) / 12.0, x_tok)
    assert "n=4" in tok._suptitle.get_text()
    labels = [t.get_text() for t in tok.axes[0].get_legend().get_texts()]
    assert "95 % CI (bootstrap)" in labels and "odp (no budget signal)" in labels
    # a tokenizer lacking a budget in the middle (absent 128) still draws one connected line with its band
    odp = tok.axes[0].lines[1]
    assert np.isfinite(np.asarray(odp.get_xdata(), float)).all() and list(odp.get_xdata()) == [64.0, 256.0]
    assert len(tok.axes[0].collections) == 2  # one band per tokenizer


def test_allocate_and_rate_distortion_use_the_received_tokens():
    from alit_eval.analysis import token_selection as ts
    from alit_eval.analysis.rate_distortion import _targets
    from alit_eval.analysis.selection_summary import summarize_selection

    t = _dropping()["drop"]
    sel = ts.selection_table(t, [("0.1", 0.1)], criterion="l1")
    sel["tokens_received"] = received.at_selection(sel, t)
    _, summary, _ = summarize_selection(sel, t, command="allocate", dataset="d", preprocess="p",
                                        tokens="tokens_received")
    want = [float(t[(t["index"] == i) & (t["budget"] == b)]["tokens_used"].iloc[0])
            for i, b in zip(sel["index"], sel["selected_budget"])]
    assert summary["mean_tokens"].iloc[0] == pytest.approx(np.mean(want))
    bits = _targets([32, 64, 128, 256], 12.0, t)
    assert bits[256] == pytest.approx(t[t["budget"] == 256]["tokens_used"].mean() * 12.0)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    return make_tiny_alit(d / "a.safetensors", seed=0), make_tiny_alit(d / "b.safetensors", seed=1)


def _big_alit(path):
    """A tiny ALIT taking 64 px images (the conftest one takes 32 px)."""
    import torch

    from alit_eval.tokenizers.alit.config import AlitConfig
    from alit_eval.tokenizers.alit.model import AlitTokenizer
    from alit_eval.tokenizers.base2d.config import Base2DConfig
    from alit_eval.tokenizers.checkpoints import save_tokenizer

    torch.manual_seed(0)
    cfg = AlitConfig(width=64, depth=1, heads=2, image_size=64, patch_size=16, tokens_per_iter=4, iterations=4,
                     codebook_size=64, base=Base2DConfig(kind="vqgan", ch=32, ch_mult=(1, 1, 1, 1, 1),
                                                         z_channels=32, embed_dim=32, n_embed=64))
    return save_tokenizer(AlitTokenizer(cfg), path)


def test_compare_refuses_different_image_sizes(tiny_pair, tmp_path, capsys):
    big = _big_alit(tmp_path / "big.safetensors")
    with pytest.raises(SystemExit) as exit_info:
        main(["--results-dir", str(tmp_path), "--device", "cpu", "compare", "--ckpt", f"small={tiny_pair[0]}",
              "--ckpt", f"big={big}", "--data", "demo-scenes", "--limit", "2", "--no-fid"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "small 32 px, big 64 px" in err and "--mixed-sizes" in err
    assert not (tmp_path / "compare").exists() or not any((tmp_path / "compare").rglob("metrics.csv"))


def test_compare_flags_no_budget_signal_and_names_every_row(tiny_pair, tmp_path):
    a, b = tiny_pair
    res = CliRunner().invoke(app, ["--results-dir", str(tmp_path), "--device", "cpu", "compare", "--ckpt",
                                   f"a={a}", "--ckpt", f"b={b}", "--data", "demo-scenes", "--limit", "6", "--no-fid",
                                   "--budgets", "4,8,16", "--n-boot", "20", "--run-id", "s"])
    assert res.exit_code == 0, res.output
    folder = tmp_path / "compare" / "s"
    meta = json.loads((folder / "meta.json").read_text())["extra"]
    verdicts = {n: t["budget_signal"]["verdict"] for n, t in meta["tokenizers"].items()}
    flat = [n for n, v in verdicts.items() if v == "flat"]
    assert flat, verdicts  # random-weight tiny ALITs: L1 does not move with the budget
    assert all(f"NO BUDGET SIGNAL for {n}" in res.output for n in flat)
    assert "image size: a 32 px, b 32 px" in res.output
    assert "a: reconstruction: 6 images to process" in res.output  # progress names the tokenizer
    for name in ("compare.csv", "matched_tokens.csv", "paired_tests.csv"):
        table = pd.read_csv(folder / name)
        assert dict(zip(table["tokenizer"], table["budget_signal"])) == {
            n: v for n, v in verdicts.items() if n in set(table["tokenizer"])}, name
    from alit_eval.results import report as rp
    from alit_eval.results.report_html import build_report

    html, md = build_report([folder], out=tmp_path / "rep")
    text = md.read_text()
    assert all(f"NO BUDGET SIGNAL for {n}" in text for n in flat)
    metrics = pd.read_csv(folder / "metrics.csv")
    alloc = rp.allocation_table(metrics)
    assert alloc is not None and set(alloc["tokenizer"]) == {"a", "b"}  # no row without its tokenizer


@pytest.mark.figures
def test_allocate_epsilon_writes_every_output_and_warns_on_a_missed_target(tmp_path):
    from alit_eval.tokenizers.checkpoints import save_tokenizer
    from test_karl_model import tiny_model

    ckpt = save_tokenizer(tiny_model(), tmp_path / "karl.safetensors")
    res = CliRunner().invoke(app, ["--results-dir", str(tmp_path), "--device", "cpu", "allocate", "--ckpt", str(ckpt),
                                   "--criterion", "epsilon", "--thresholds", "0.03,0.05", "--data", "demo-scenes",
                                   "--limit", "4", "--no-fid", "--run-id", "e"])
    assert res.exit_code == 0, res.output
    folder = tmp_path / "allocate" / "e"
    for name in ("per_image.parquet", "selection.parquet", "allocation_summary.csv", "selected_budgets.csv",
                 "gallery/gallery.csv", "figures/tokens_vs_threshold.png", "figures/selected_budget_histogram.png",
                 "figures/gallery.png"):
        assert (folder / name).is_file(), name
    summary = pd.read_csv(folder / "allocation_summary.csv")
    per = pd.read_parquet(folder / "per_image.parquet")
    for t, g in per.groupby("threshold"):  # the summary is the mean of the per-image table
        row = summary[np.isclose(summary["threshold"], t)].iloc[0]
        assert row["mean_tokens"] == pytest.approx(g["tokens_used"].mean())
        missed = abs(g["l1"].mean() - t) / t > 0.5
        assert bool(row["target_missed"]) == missed
        assert (f"epsilon = {t:g} the achieved mean L1" in res.output) == missed
    assert summary["target_missed"].any()  # a random tiny KARL does not reach L1 0.03
    assert "token allocation" in res.output  # the console summary


def test_compare_variable_token_rfid_with_its_shuffled_control(tmp_path):
    from types import SimpleNamespace

    from alit_eval.analysis.compare import fid_rows, variable_fids
    from test_allocation import _fake_store, _naive_fid

    budgets = [4, 8, 12, 16]
    store, feats = _fake_store(tmp_path, n=13, dim=3, budgets=budgets)
    rng = np.random.default_rng(3)
    chosen = rng.choice(budgets, size=13)
    sel = pd.DataFrame({"tokenizer": "t", "index": np.arange(13), "image_id": [f"img{i}" for i in range(13)],
                        "threshold": 0.1, "selected_budget": chosen})
    inputs = {"t": SimpleNamespace(result=SimpleNamespace(store=store, budgets=budgets))}
    fids = variable_fids(inputs, sel, seed=0)
    rows = np.stack([feats[int(b)][i] for i, b in enumerate(chosen)])
    assert fids["variable_rfid"].item() == pytest.approx(_naive_fid(rows, feats["ref"]), rel=1e-6)
    perm = np.random.default_rng(0).permutation(chosen)  # the shuffled control: same budgets, random images
    shuffled = np.stack([feats[int(b)][i] for i, b in enumerate(perm)])
    assert fids["shuffled_rfid"].item() == pytest.approx(_naive_fid(shuffled, feats["ref"]), rel=1e-6)
    summary = pd.DataFrame({"tokenizer": ["t"], "threshold": [0.1], "n": [13]})
    out = fid_rows(fids, summary, "tf1", dataset="d", preprocess="p", criterion="l1")
    assert sorted(r["condition"].split("selection=")[1].split(";")[0] for r in out) == ["shuffled", "variable"]
    assert all("tokenizer=t" in r["condition"] for r in out)
    # the cross-family reproduction finds the variable (not the shuffled) rFID of a compare run
    import sys
    from pathlib import Path

    from alit_eval.results.schema import metrics_frame

    analyses = Path(__file__).resolve().parents[1] / "analyses"
    sys.path.insert(0, str(analyses))
    try:
        import _common
        import published
        import reproduce_cross_family as x
    finally:
        sys.path.remove(str(analyses))
    rows = x.tokenizer_rows(metrics_frame(out), "t")
    got = _common.lookup(rows, published.Published("t", "d", "rfid", 9.0, "s", threshold=0.1))
    assert got == pytest.approx(fids["variable_rfid"].item())
    assert "variable-token FIDs" in x.__doc__ and "has no variable-token rFID" not in x.__doc__


def test_fid_between_warns_under_2048_images_like_the_cli(tmp_path, monkeypatch):
    import alit_eval
    from alit_eval.metrics import inception
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / name / f"{i}.png")

    class Stop(Exception):
        pass

    def no_network(*a, **k):  # the warning comes before the network is built; stop there (fast)
        raise Stop

    monkeypatch.setattr(inception, "InceptionFeatures", no_network)
    with pytest.warns(UserWarning, match=r"3 images \(< 2048\)"), pytest.raises(Stop):
        alit_eval.fid_between(tmp_path / "a", tmp_path / "b", device="cpu", offline=True)
