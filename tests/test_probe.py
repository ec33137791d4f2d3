"""Linear probes on known toy problems, token-selection rules, the feature tap, and `alit-eval downstream`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from alit_eval.analysis.probe import (FeatureTap, fit_classifier, fit_regressor, r2,
                                      select_by_reconstruction, smallest_correct, stratified_split, topk_correct)
from alit_eval.analysis.stats import bootstrap_ci, bootstrap_mean_ci
from alit_eval.cli.app import app


def _blobs(n: int, k: int, d: int, sep: float, seed: int):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    centres = rng.normal(size=(k, d)) * sep
    return centres[y] + rng.normal(size=(n, d)), y.astype(str)


def test_separable_toy_problem_is_solved():
    x, y = _blobs(300, 6, 10, sep=8.0, seed=0)
    tr, te = stratified_split(y, 0.3, seed=0)
    model = fit_classifier(x[tr], y[tr], seed=0)
    top1 = topk_correct(model, x[te], y[te], 1)
    assert top1.mean() >= 0.98
    assert topk_correct(model, x[te], y[te], 5).mean() >= top1.mean()
    assert model.chosen_c in (0.01, 0.1, 1.0, 10.0)


def test_random_labels_stay_at_chance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 20))
    y = rng.integers(0, 4, 400).astype(str)
    tr, te = stratified_split(y, 0.3, seed=0)
    hits = topk_correct(fit_classifier(x[tr], y[tr], seed=0), x[te], y[te], 1).astype(float)
    lo, hi = bootstrap_mean_ci(hits, seed=0)
    assert abs(hits.mean() - 0.25) < 0.1 and lo < 0.25 + 0.05 and hi > 0.25 - 0.05
    assert topk_correct(fit_classifier(x[tr], y[tr], seed=0), x[te], y[te], 4).all()  # k = all classes


def test_split_is_deterministic_and_stratified():
    y = np.array(["a"] * 60 + ["b"] * 30 + ["c"] * 10)
    tr, te = stratified_split(y, 0.3, seed=5)
    tr2, te2 = stratified_split(y, 0.3, seed=5)
    assert np.array_equal(te, te2) and not set(tr) & set(te) and len(tr) + len(te) == 100
    assert {k: int((y[te] == k).sum()) for k in "abc"} == {"a": 18, "b": 9, "c": 3}
    assert not np.array_equal(stratified_split(y, 0.3, seed=6)[1], te)


def test_bootstrap_cis_are_seeded():
    v = np.random.default_rng(2).random(50)
    assert bootstrap_mean_ci(v, seed=3) == bootstrap_mean_ci(v, seed=3) != bootstrap_mean_ci(v, seed=4)
    a, b = np.random.default_rng(3).random((2, 40))
    assert bootstrap_ci(r2, (a, b), seed=1, n_boot=200) == bootstrap_ci(r2, (a, b), seed=1, n_boot=200)


def test_ridge_probe_recovers_a_linear_target_and_not_noise():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 8))
    t = x @ rng.normal(size=8) + 0.05 * rng.normal(size=300)
    model = fit_regressor(x[:200], t[:200])
    assert r2(t[200:], model.predict(x[200:])) > 0.99
    noise = rng.normal(size=300)
    assert r2(noise[200:], fit_regressor(x[:200], noise[:200]).predict(x[200:])) < 0.1
    assert r2(t, t) == 1.0 and np.isnan(r2(np.ones(3), np.zeros(3)))


def test_selection_rules():
    budgets = [8, 16, 24, 32]
    rng = np.random.default_rng(5)
    correct = rng.random((50, 4)) < 0.3
    got = smallest_correct(correct, budgets)
    for row, g in zip(correct, got):
        want = next((b for b, c in zip(budgets, row) if c), None)
        assert (np.isnan(g) and want is None) or g == want
    l1 = np.array([[0.09, 0.06, 0.04, 0.03], [0.2, 0.1, 0.12, 0.15]])
    chosen, fallback = select_by_reconstruction(l1, budgets, 0.05)
    assert chosen.tolist() == [24.0, 16.0] and fallback.tolist() == [False, True]


def test_feature_tap_adds_the_encoder_2d_tokens_and_reencoded_reconstructions(tiny_ckpt):
    from alit_eval.metrics.pixel import to_uint8
    from alit_eval.tokenizers.generators import per_image_generators
    from alit_eval.tokenizers.checkpoints import load_alit_checkpoint

    model = load_alit_checkpoint(tiny_ckpt, halting="seeded")
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ids = ["a", "b", "c"]
    tap = FeatureTap(model, recon_view=True)
    r = tap.rollout(x, [4, 12], generator=per_image_generators(0, ids), halting="seeded")
    plain = model.rollout(x, [4, 12], generator=per_image_generators(0, ids), halting="seeded")
    torch.testing.assert_close(r[12].latent, plain[12].latent)  # the wrapper changes nothing it returns
    with torch.no_grad():  # the first iteration's encoder output, by hand
        seq, _ = model.initial_sequence(x, model.base_features(x, "seeded", per_image_generators(0, ids))[0])
        enc = model.encoder(seq)
    n2d = model.cfg.num_2d
    torch.testing.assert_close(r[4].extras["enc2d_mean"], enc[:, 1 : 1 + n2d].mean(1))
    torch.testing.assert_close(r[12].extras["latent_first_mean"], plain[12].latent[:, :4].mean(1))
    torch.testing.assert_close(r[4].extras["base2d_mean"], plain.extras["base_z"].mean((2, 3)))
    for b in (4, 12):
        rec = to_uint8(plain[b].extras["reconstruction_raw"]).float() / 255
        again = model.rollout(rec, [16], decode=False, generator=per_image_generators(0, ids), halting="seeded")
        torch.testing.assert_close(r[b].extras["recon_latent_mean"], again[16].latent.mean(1))


def test_feature_tap_leaves_the_official_random_stream_untouched(tiny_ckpt):
    from alit_eval.metrics.pixel import to_uint8
    from alit_eval.tokenizers.checkpoints import load_alit_checkpoint

    model = load_alit_checkpoint(tiny_ckpt, halting="official")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    r = FeatureTap(model, recon_view=True).rollout(x, [8], halting="official")
    after_tap = torch.rand(3)
    torch.manual_seed(0)
    plain = model.rollout(x, [8], halting="official")
    torch.testing.assert_close(torch.rand(3), after_tap)  # the sweep's next batch sees the same draws
    torch.manual_seed(0)  # the re-encode replays the original's draws
    again = model.rollout(to_uint8(plain[8].extras["reconstruction_raw"]).float() / 255, [16], decode=False,
                          halting="official")
    torch.testing.assert_close(r[8].extras["recon_latent_mean"], again[16].latent.mean(1))


@pytest.mark.figures
def test_downstream_cli_with_label_and_target_csvs(tiny_ckpt, tmp_path):
    from alit_eval.data.demo import generate

    ids = [generate("demo-scenes", i, size=32) for i in range(24)]
    labels = tmp_path / "labels.csv"
    labels.write_text("image,label\n" + "".join(f"{s.id},{'many' if s.n_objects > 4 else 'few'}\n" for s in ids))
    targets = tmp_path / "count.csv"
    targets.write_text("".join(f"{s.id},{s.n_objects}\n" for s in ids))
    res = CliRunner().invoke(app, ["--device", "cpu", "--results-dir", str(tmp_path), "downstream", "--ckpt",
                                   str(tiny_ckpt), "--limit", "24", "--budgets", "4,16", "--features", "latent,2d+first",
                                   "--labels", str(labels), "--targets", str(targets), "--run-id", "r"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "downstream" / "r"
    m = pd.read_csv(run / "metrics.csv", keep_default_na=False)
    top1 = m[m["metric"] == "top1"]
    assert len(top1) == 2 * 2 + 2  # two kinds x two budgets + the reconstruction view at two budgets
    assert "top5" not in set(m["metric"])  # only two classes
    assert {"r2", "mae", "spearman_rho", "mean_selected_tokens", "chance_majority"} <= set(m["metric"])
    assert m[m["metric"] == "r2"]["condition"].str.contains("target=count").all()
    per = pd.read_parquet(run / "per_image.parquet")
    test = per[per["split"] == "test"]
    assert len(test) == 2 * 8 and test["probe_correct"].notna().all()  # 30% of 24 images, two budgets
    assert per.loc[per["split"] == "train", "probe_correct"].isna().all()
    sel = test.drop_duplicates("image_id")
    assert sel["selected_tokens_l1"].isin([4, 16]).all()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["extra"]["probe"]["n_classes"] == 2
    for name in ("probe_accuracy_vs_tokens", "selected_tokens", "regression_vs_tokens"):
        assert (run / "figures" / f"{name}.png").is_file()


def test_downstream_cli_demo_labels(tiny_ckpt, tmp_path):
    res = CliRunner().invoke(app, ["--device", "cpu", "--results-dir", str(tmp_path), "downstream", "--ckpt",
                                   str(tiny_ckpt), "--limit", "40", "--budgets", "8", "--features", "codes,base2d",
                                   "--select-feature", "codes", "--no-recon-view", "--run-id", "d"])
    assert res.exit_code == 0, res.output
    m = pd.read_csv(tmp_path / "downstream" / "d" / "metrics.csv", keep_default_na=False)
    meta = json.loads((tmp_path / "downstream" / "d" / "meta.json").read_text())["extra"]["probe"]
    assert meta["n_classes"] >= 2 and meta["n_labelled"] == 40
    # Classes with fewer than 4 images are left out and named.
    assert isinstance(meta["dropped_rare_classes"], list)
    base = m[m["condition"].str.contains("feature=base2d") & (m["metric"] == "top1")]
    assert len(base) == 1 and base["budget"].iloc[0] == ""  # budget-independent features: probed once
    assert not m["condition"].str.contains("view=reconstruction").any()
    assert {"r2"} <= set(m["metric"])  # demo ground truth gives n_objects and complexity targets
    bad = CliRunner().invoke(app, ["--device", "cpu", "downstream", "--ckpt", str(tiny_ckpt), "--features", "pixels"])
    assert bad.exit_code != 0 and "unknown feature kind" in str(bad.exception)
