"""Token selection (`alit-eval allocate`): selection rules, censoring, the batch-mean rule, threshold
resolution, fixed-budget equivalence, variable-token FID, `--from-run` reuse and the CLI layout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from typer.testing import CliRunner

from alit_eval.analysis import token_selection as al
from alit_eval.analysis.allocate import run as run_allocate
from alit_eval.analysis.selection_summary import shuffled_budgets, variable_fids_of
from alit_eval.cli.app import app
from alit_eval.engine.config import SweepConfig
from alit_eval.engine.store import ShardStore
from alit_eval.engine.sweep import accumulate
from alit_eval.errors import AlitEvalError
from alit_eval.metrics.feature_distance import FrechetReference
from alit_eval.results.schema import parse_condition

BUDGETS = [4, 8, 12, 16]
# Hand-made per-image L1 (rows: images, columns: BUDGETS). Threshold 0.07:
#   img0 first below at 8; img1 never below (min at 12, last is 16); img2 below at 4;
#   img3 never below, tie of the minimum at 8 and 16 (first wins); img4 below only at 16.
L1 = np.array([
    [0.10, 0.06, 0.05, 0.04],
    [0.20, 0.15, 0.12, 0.13],
    [0.05, 0.04, 0.03, 0.02],
    [0.09, 0.08, 0.085, 0.08],
    [0.30, 0.20, 0.10, 0.069],
])


def _per_image(values: np.ndarray, budgets=BUDGETS, **extra_cols) -> pd.DataFrame:
    rows = []
    for i, row in enumerate(values):
        for j, b in enumerate(budgets):
            rows.append({"image_id": f"img{i}", "index": i, "budget": b, "label": "x", "l1": row[j],
                         "mse": row[j] ** 2, "psnr": -10 * np.log10(row[j] ** 2), "ssim": 1 - row[j],
                         "halted_2d": 0, **{k: v[i] for k, v in extra_cols.items()}})
    return pd.DataFrame(rows)


def _naive(values, thr, higher=False, fallback="min-error"):
    out, cens = [], []
    for row in values:
        hit = [j for j, v in enumerate(row) if (v > thr if higher else v < thr)]
        if hit:
            out.append(hit[0]), cens.append(False)
        elif fallback == "max-budget":
            out.append(len(row) - 1), cens.append(True)
        else:
            best = max(row) if higher else min(row)
            out.append(list(row).index(best)), cens.append(True)
    return np.array(out), np.array(cens)


def test_hand_made_table_censoring_and_both_fallbacks():
    idx, cens = al.select_indices(L1, 0.07)
    assert idx.tolist() == [1, 2, 0, 1, 3] and cens.tolist() == [False, True, False, True, False]
    idx, cens = al.select_indices(L1, 0.07, fallback="max-budget")
    assert idx.tolist() == [1, 3, 0, 3, 3] and cens.tolist() == [False, True, False, True, False]
    # The per-image rule agrees with the official single-image rule (tested against the official code).
    for row, i in zip(L1, al.select_indices(L1, 0.07)[0]):
        assert al.select_official(row, 0.07)[0] == i
    with pytest.raises(AlitEvalError, match="fallback"):
        al.select_indices(L1, 0.07, fallback="last")
    with pytest.raises(AlitEvalError, match="criterion"):
        al.select_indices(L1, 0.07, criterion="dice")


@pytest.mark.parametrize("criterion,higher", [("l1", False), ("mse", False), ("psnr", True), ("ssim", True)])
@pytest.mark.parametrize("fallback", ["min-error", "max-budget"])
def test_rule_matches_a_naive_loop_on_random_tables(criterion, higher, fallback):
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 1, (200, 6)).round(2)  # rounding creates ties
    thr = 0.3 if not higher else 0.7
    idx, cens = al.select_indices(values, thr, criterion, fallback)
    want_idx, want_cens = _naive(values, thr, higher, fallback)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(cens, want_cens)
    # Strict inequality, as the official `<`: a value equal to the threshold does not reach it.
    eq = np.full((1, 3), thr)
    assert al.select_indices(eq, thr, criterion, fallback)[1].tolist() == [True]


def test_batch_mean_rule_against_a_naive_loop():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.02, 0.12, (23, 5))
    for n in (1, 4, 7, 23, 50):
        idx, cens = al.select_batch_mean(values, 0.07, n)
        for start in range(0, len(values), n):
            batch = values[start : start + n]
            mean = batch.mean(axis=0)  # the official L1 over the whole batch tensor
            t, how = al.select_official(mean, 0.07)
            assert (idx[start : start + n] == t).all()
            assert (cens[start : start + n] == (how == "fallback_min_l1")).all()
    np.testing.assert_array_equal(al.select_batch_mean(values, 0.07, 1)[0], al.select_indices(values, 0.07)[0])


def test_selection_table_columns_and_selected_quality():
    per = _per_image(L1, complexity=np.arange(5.0))
    sel = al.selection_table(per, [("0.07", 0.07), ("auto", 0.2)], criterion="l1", fallback="min-error")
    assert len(sel) == 10
    first = sel[sel["threshold"] == 0.07].set_index("image_id")
    assert first["selected_budget"].tolist() == [8, 12, 4, 8, 16]
    assert first["censored"].tolist() == [False, True, False, True, False]
    assert first["required_tokens"].tolist() == [8, 16, 4, 16, 16]  # censored -> largest budget
    for i, row in enumerate(L1):
        b = first.loc[f"img{i}", "selected_budget"]
        assert first.loc[f"img{i}", "l1"] == row[BUDGETS.index(b)]
        assert first.loc[f"img{i}", "complexity"] == i
    assert set(sel.columns) >= {"image_id", "index", "threshold", "threshold_spec", "criterion", "fallback",
                                "batch_size", "selected_budget", "censored", "l1", "mse", "psnr", "ssim"}
    batch = al.selection_table(per, [("0.07", 0.07)], batch_size=2)
    assert (batch["batch_size"] == 2).all()


def test_threshold_resolution():
    per = _per_image(L1)
    mid = L1[:, 2]  # middle budget = the len//2-th ascending budget = 12
    out = al.resolve_thresholds(["auto", "q0.25", "0.06", "q0.5"], per, "l1")
    assert out == [("auto", pytest.approx(np.median(mid))), ("q0.25", pytest.approx(np.quantile(mid, 0.25))),
                   ("0.06", 0.06)]  # q0.5 equals auto: dropped
    for bad in ("abc", "q2", "qx"):
        with pytest.raises(AlitEvalError):
            al.resolve_thresholds([bad], per, "l1")


def test_fixed_budget_equivalent():
    b = [32, 64, 128, 256]
    curve = [0.12, 0.10, 0.08, 0.07]
    assert al.fixed_budget_equivalent(b, curve, 0.09) == (pytest.approx(96.0), "ok")
    assert al.fixed_budget_equivalent(b, curve, 0.10) == (pytest.approx(64.0), "ok")
    assert al.fixed_budget_equivalent(b, curve, 0.13) == (32.0, "at-most-smallest")
    value, status = al.fixed_budget_equivalent(b, curve, 0.05)
    assert np.isnan(value) and status == "unreachable"
    # not monotone: the first crossing counts
    assert al.fixed_budget_equivalent(b, [0.12, 0.09, 0.11, 0.08], 0.10) == (pytest.approx(32 + 32 * 2 / 3), "ok")
    # higher is better (PSNR)
    assert al.fixed_budget_equivalent(b, [20, 22, 24, 25], 23, "higher") == (pytest.approx(96.0), "ok")


def _fake_store(tmp_path, n=13, dim=6, budgets=BUDGETS, shard=5, seed=0):
    rng = np.random.default_rng(seed)
    store = ShardStore(tmp_path)
    feats = {"ref": rng.normal(size=(n, dim))}
    for k, b in enumerate(budgets):
        feats[b] = feats["ref"] + rng.normal(scale=0.3 + 0.2 * k, size=(n, dim)) + 0.1 * k
    for start in range(0, n, shard):
        sl = slice(start, min(start + shard, n))
        arrays = {"index": np.arange(n)[sl], "id": np.array([f"img{i}" for i in range(n)])[sl],
                  "feat_ref": feats["ref"][sl].astype(np.float32)}
        for b in budgets:
            arrays[f"feat_{b}"] = feats[b][sl].astype(np.float32)
        store.write(start, arrays)
    return store, {k: v.astype(np.float32).astype(np.float64) for k, v in feats.items()}


def _naive_fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_variable_token_fid_equals_a_naive_fid_of_the_selected_rows(tmp_path):
    store, feats = _fake_store(tmp_path)
    rng = np.random.default_rng(1)
    chosen = rng.choice(BUDGETS, size=13)
    sel = pd.DataFrame({"index": np.arange(13), "threshold": 0.05, "selected_budget": chosen})
    fid = variable_fids_of(store, [sel])[0][0.05]
    rows = np.stack([feats[b][i] for i, b in enumerate(chosen)])
    assert fid == pytest.approx(_naive_fid(rows, feats["ref"]), rel=1e-6)
    # Every image at one budget: exactly that budget's FID as `fid`/`allocate` compute it.
    stats = accumulate(store, ["feat_ref", "feat_8"])
    want = FrechetReference.of(stats["feat_ref"]).distance_to(stats["feat_8"])
    fixed = variable_fids_of(store, [sel.assign(selected_budget=8)])[0][0.05]
    assert fixed == want


def test_shuffled_control_keeps_each_thresholds_histogram_and_is_seeded(tmp_path):
    rng = np.random.default_rng(3)
    sel = pd.DataFrame({"index": np.tile(np.arange(50), 2), "threshold": np.repeat([0.05, 0.1], 50),
                        "selected_budget": rng.choice(BUDGETS, size=100)})
    a, b, c = shuffled_budgets(sel, 0), shuffled_budgets(sel, 0), shuffled_budgets(sel, 1)
    assert a.equals(b) and not a.equals(c)
    assert not a["selected_budget"].equals(sel["selected_budget"])
    for t in (0.05, 0.1):
        assert sorted(a.loc[a.threshold == t, "selected_budget"]) == sorted(sel.loc[sel.threshold == t, "selected_budget"])
    assert a.drop(columns="selected_budget").equals(sel.drop(columns="selected_budget"))
    # The control's FID is the naive FID of the permuted rows.
    store, feats = _fake_store(tmp_path)
    small = pd.DataFrame({"index": np.arange(13), "threshold": 0.05, "selected_budget": rng.choice(BUDGETS, size=13)})
    shuffled = shuffled_budgets(small, 5)
    rows = np.stack([feats[b][i] for i, b in enumerate(shuffled["selected_budget"])])
    assert variable_fids_of(store, [shuffled])[0][0.05] == pytest.approx(_naive_fid(rows, feats["ref"]), rel=1e-6)


def _fake_run(folder, values=L1, budgets=BUDGETS):
    """A finished sweep folder with per-image metrics and (random) Inception features."""
    folder.mkdir(parents=True)
    per = _per_image(values, budgets)
    per.to_parquet(folder / "per_image.parquet", index=False)
    _fake_store(folder, n=len(values), dim=3, budgets=budgets)  # n > dim: full-rank covariances
    (folder / "config.json").write_text(json.dumps({
        "data": {"source": "demo-scenes", "kind": "demo", "preprocess": "generated", "n": len(values), "size": 32},
        "budgets": budgets, "fid": True, "fid_resize": "tf1", "checkpoint": {"name": "fake", "sha256": None}}))
    return folder


@pytest.mark.figures
def test_allocate_from_a_finished_sweep_with_features(tmp_path):
    src = _fake_run(tmp_path / "sweep")
    req = SweepConfig(fid=True)
    r, metrics, sel = run_allocate(req, from_run=str(src), thresholds=["0.07", "1.0"], results_dir=tmp_path / "res",
                                   progress=False)
    meta = json.loads((r.path / "meta.json").read_text())
    assert meta["extra"]["rollout_calls"] == 0 and meta["extra"]["from_run"] == str(src.resolve())
    for name in ("metrics.csv", "per_image.parquet", "selection.parquet", "allocation_summary.csv",
                 "selected_budgets.csv", "figures/tokens_vs_threshold.png", "figures/selected_budget_histogram.png",
                 "figures/adaptive_vs_fixed.png", "figures/gallery.png", "gallery/gallery.csv"):
        assert (r.path / name).is_file(), name
    m = pd.read_csv(r.path / "metrics.csv", keep_default_na=False, na_values={"budget": [""]})
    rfid = m[m["metric"] == "rfid"]
    fixed = rfid[rfid["budget"].notna()].set_index("budget")["value"]
    var = rfid[rfid["budget"].isna()]
    assert len(fixed) == 4 and len(var) == 4  # variable and shuffled, two thresholds
    # threshold 1.0: every image reaches it at the smallest budget -> the 4-token FID exactly
    thr = var["condition"].map(lambda c: parse_condition(c)["threshold"])
    selection = var["condition"].map(lambda c: parse_condition(c)["selection"])
    assert sorted(selection) == ["shuffled", "shuffled", "variable", "variable"]
    at1 = var.loc[(thr == "1") & (selection == "variable"), "value"].item()
    assert at1 == pytest.approx(fixed[4], rel=1e-9)
    # one budget for every image: shuffling changes nothing
    assert var.loc[(thr == "1") & (selection == "shuffled"), "value"].item() == pytest.approx(fixed[4], rel=1e-9)
    s = pd.read_csv(r.path / "allocation_summary.csv").set_index("threshold")
    assert s.loc[0.07, "mean_tokens"] == pytest.approx(np.mean([8, 12, 4, 8, 16]))
    assert s.loc[0.07, "censored_share"] == pytest.approx(0.4)
    # token saving against the fixed budget with the same mean L1, recomputed by hand
    curve = L1.mean(axis=0)
    target = np.mean([0.06, 0.12, 0.05, 0.08, 0.069])
    j = int(np.argmax(curve <= target))
    fixed_b = BUDGETS[j - 1] + (target - curve[j - 1]) / (curve[j] - curve[j - 1]) * (BUDGETS[j] - BUDGETS[j - 1])
    assert s.loc[0.07, "fixed_budget_equivalent"] == pytest.approx(fixed_b)
    assert s.loc[0.07, "token_saving_pct"] == pytest.approx(100 * (1 - 9.6 / fixed_b))


@pytest.mark.figures
def test_cli_allocate_layout_and_from_run_does_not_reconstruct(tiny_ckpt, tmp_path, monkeypatch):
    runner = CliRunner()
    args = ["--results-dir", str(tmp_path), "--device", "cpu", "allocate"]
    res = runner.invoke(app, args + ["--ckpt", str(tiny_ckpt), "--limit", "8", "--batch-size", "4", "--no-fid",
                                     "--thresholds", "auto,q0.25,0.5", "--run-id", "a"])
    assert res.exit_code == 0, res.output
    folder = tmp_path / "allocate" / "a"
    for name in ("metrics.csv", "per_image.parquet", "selection.parquet", "meta.json", "config.json",
                 "figures/tokens_vs_threshold.png", "figures/gallery.png"):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "meta.json").read_text())["extra"]["rollout_calls"] == 2  # 8 images / batch 4
    sel = pd.read_parquet(folder / "selection.parquet")
    assert len(sel) == 8 * 3 and set(sel["selected_budget"]) <= {4, 8, 12, 16}

    from alit_eval.tokenizers.alit.model import AlitTokenizer

    def no_rollout(*a, **k):
        raise AssertionError("--from-run must not reconstruct")

    monkeypatch.setattr(AlitTokenizer, "rollout", no_rollout)
    # The library entry point (figures off to keep the test fast); the CLI path is the same function.
    run_b, _, sel_b = run_allocate(SweepConfig(fid=False), from_run=str(folder), thresholds=["auto"],
                                   criterion="psnr", fallback="max-budget", batch_criterion=4, gallery=False,
                                   results_dir=tmp_path, run_id="b", progress=False, figures=False)
    assert json.loads((run_b.path / "meta.json").read_text())["extra"]["rollout_calls"] == 0
    assert not (run_b.path / "figures").exists()
    per = pd.read_parquet(folder / "per_image.parquet")
    psnr = per.pivot(index="index", columns="budget", values="psnr").to_numpy()
    thr = float(np.median(psnr[:, 2]))
    idx, cens = al.select_batch_mean(psnr, thr, 4, "psnr", "max-budget")
    np.testing.assert_array_equal(sel_b["selected_budget"], np.array(BUDGETS)[idx])
    np.testing.assert_array_equal(sel_b["censored"], cens)
    # a broken --from-run gives one clear error
    res = runner.invoke(app, args + ["--from-run", str(tmp_path / "nope")])
    assert res.exit_code != 0 and "no such folder" in str(res.exception)
