"""``--noise-seeds``: the between-seed spread of every metric, against naive recomputations from separate runs.

A tiny random FlexTok (32 px, 2 flow steps) is the random decoder; a tiny One-D-Piece the deterministic one.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from alit_eval.analysis import noise_spread
from alit_eval.analysis.reconstruction import run
from alit_eval.cli.app import main
from alit_eval.engine.config import SweepConfig
from alit_eval.tokenizers.checkpoints import save_tokenizer
from test_flextok_model import make_tiny_flextok

BUDGETS = [2, 8]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # oversubscribed threads are much slower on a shared machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_flextok(tmp_path_factory):
    return save_tokenizer(make_tiny_flextok(), tmp_path_factory.mktemp("ft") / "tiny_flextok.safetensors")


@pytest.fixture(scope="module")
def tiny_odp(tmp_path_factory):
    from test_one_d_piece_model import tiny_config

    from alit_eval.tokenizers.one_d_piece.model import OneDPieceTokenizer

    torch.manual_seed(0)
    return save_tokenizer(OneDPieceTokenizer(tiny_config()).eval(), tmp_path_factory.mktemp("odp") / "odp.safetensors")


def _fid(ckpt, results, *, seed=0, n=1, on_batch=None):
    cfg = SweepConfig(ckpt=str(ckpt), data="demo-scenes", limit=4, batch_size=2, fid=False, budgets=list(BUDGETS),
                      options={"steps": 2}, noise_seeds=n)
    return run(cfg, seed=seed, device="cpu", offline=True, results_dir=results, progress=False, on_batch=on_batch)[0]


@pytest.fixture(scope="module")
def separate(tiny_flextok, tmp_path_factory):
    """Three ordinary runs with seeds 0, 1, 2 (N = 1 each)."""
    root = tmp_path_factory.mktemp("sep")
    return {s: _fid(tiny_flextok, root / f"s{s}", seed=s) for s in (0, 1, 2)}


@pytest.fixture(scope="module")
def noisy(tiny_flextok, tmp_path_factory):
    return _fid(tiny_flextok, tmp_path_factory.mktemp("noisy"), n=3)


def _per_image(folder):
    return pd.read_parquet(folder / "per_image.parquet").sort_values(["image_id", "budget"]).reset_index(drop=True)


def test_spread_is_zero_across_identical_seeds_and_positive_across_different(separate, noisy):
    runs = separate

    class _Inputs:  # what spread_table reads of a sweep: its result's per-image table
        def __init__(self, folder):
            self.result = type("R", (), {"per_image": _per_image(folder), "budgets": BUDGETS})()

    # seed 0 twice, in two separate runs (the noise run's first seed is its own sweep)
    same = noise_spread.per_image_std({0: _Inputs(runs[0].path), 1: _Inputs(noisy.path)})
    assert len(same) and (same["per_image_std"] == 0).all()
    spread = pd.read_csv(noisy.path / "noise_spread.csv")
    assert list(spread.columns) == noise_spread.COLUMNS
    l1 = spread[spread.metric == "l1"]
    assert len(l1) == len(BUDGETS) and (l1["std"] > 0).all() and (l1["per_image_std"] > 0).all()
    assert (spread["n_seeds"] == 3).all() and (spread["seeds"] == "0,1,2").all() and (spread.status == "measured").all()


def test_spread_equals_a_naive_recomputation_from_separate_runs(separate, noisy):
    runs = separate
    # the headline numbers are the first seed's: the same as an ordinary run with that seed
    assert (noisy.path / "metrics.csv").read_bytes() == (runs[0].path / "metrics.csv").read_bytes()
    tables = {s: _per_image(r.path) for s, r in runs.items()}
    for s in (1, 2):  # each extra seed is an ordinary sweep with only the seed changed
        pd.testing.assert_frame_equal(_per_image(noisy.path / "noise" / f"seed{s}"), tables[s])
        assert json.loads((noisy.path / "noise" / f"seed{s}" / "config.json").read_text())["seed"] == s
    spread = pd.read_csv(noisy.path / "noise_spread.csv").set_index(["budget", "metric"])
    for b in BUDGETS:
        for m in ("l1", "psnr", "ssim", "mse"):
            per_seed = np.array([t.loc[t.budget == b, m].mean() for t in tables.values()])
            stacked = np.stack([t.loc[t.budget == b, m].to_numpy() for t in tables.values()])  # seeds x images
            row = spread.loc[(b, m)]
            assert row["mean"] == pytest.approx(per_seed.mean(), rel=1e-9)
            assert row["std"] == pytest.approx(np.std(per_seed, ddof=1), rel=1e-9, abs=1e-15)
            assert (row["min"], row["max"]) == pytest.approx((per_seed.min(), per_seed.max()))
            assert row["per_image_std"] == pytest.approx(np.std(stacked, axis=0, ddof=1).mean(), rel=1e-9)
            assert row["n_images"] == 4
    config = json.loads((noisy.path / "config.json").read_text())
    assert config["noise_seeds"] == [0, 1, 2]
    assert "noise_seeds" not in json.loads((runs[0].path / "config.json").read_text())  # N = 1: ids unchanged
    meta = json.loads((noisy.path / "meta.json").read_text())["extra"]["noise_seeds"]
    assert meta["seeds"] == [0, 1, 2] and "2 * sqrt" in meta["rule"]


def test_interrupted_noise_run_resumes_to_identical_numbers(tiny_flextok, noisy, tmp_path):
    class Boom(Exception):
        pass

    calls = []

    def stop(n):  # batches of 2 of 4 images: the third batch is the first one of seed 1
        calls.append(n)
        if len(calls) == 3:
            raise Boom()

    with pytest.raises(Boom):
        _fid(tiny_flextok, tmp_path, n=3, on_batch=stop)
    assert (tmp_path / "fid").is_dir() and not list(tmp_path.glob("fid/*/noise_spread.csv"))
    resumed = _fid(tiny_flextok, tmp_path, n=3, on_batch=calls.append)
    assert len(calls) == 3 + 1 + 2  # the rest of seed 1, all of seed 2; seed 0 was done
    assert (resumed.path / "noise_spread.csv").read_bytes() == (noisy.path / "noise_spread.csv").read_bytes()


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def test_deterministic_family_is_refused_with_one_line(tiny_odp, tmp_path, capsys):
    base = ["--results-dir", str(tmp_path), "--device", "cpu", "--offline"]
    code, _, err = _cli(base + ["fid", "--ckpt", str(tiny_odp), "--limit", "2", "--no-fid", "--budgets", "2",
                                "--noise-seeds", "2"], capsys)
    assert code == 2 and err.count("\n") == 1 and "deterministically" in err and "--noise-seeds" in err, err
    code, _, err = _cli(base + ["compare", "--ckpt", f"a={tiny_odp}", "--ckpt", f"b={tiny_odp}", "--limit", "2",
                                "--no-fid", "--budgets", "2", "--noise-seeds", "2"], capsys)
    assert code == 2 and err.count("\n") == 1 and "deterministically" in err, err


def test_compare_flags_differences_within_the_noise_band(tiny_flextok, tiny_odp, tmp_path, capsys):
    args = ["--results-dir", str(tmp_path), "--device", "cpu", "--offline", "compare", "--ckpt", f"odp={tiny_odp}",
            "--ckpt", f"ft={tiny_flextok}", "--data", "demo-scenes", "--limit", "3", "--batch-size", "3", "--no-fid",
            "--budgets", "2,8", "--n-boot", "20", "--steps", "2", "--noise-seeds", "2", "--run-id", "n"]
    code, out, err = _cli(args, capsys)
    assert code == 0, err
    assert "decoder noise (2 seeds" in out
    folder = tmp_path / "compare" / "n"
    spread = pd.read_csv(folder / "noise_spread.csv")
    assert list(spread.columns) == noise_spread.COLUMNS
    odp, ft = spread[spread.tokenizer == "odp"], spread[spread.tokenizer == "ft"]
    assert (odp.status == "deterministic").all() and (odp["std"] == 0).all() and (odp.n_seeds == 1).all()
    assert (ft.status == "measured").all() and (ft[ft.metric == "l1"]["std"] > 0).all()
    assert (folder / "sweeps" / "ft" / "noise" / "seed1" / "shards").is_dir()
    assert not (folder / "sweeps" / "odp" / "noise").exists()
    table = pd.read_csv(folder / "compare.csv")
    std = spread.set_index(["tokenizer", "budget", "metric"])["std"]
    for r in table[table.tokenizer == "ft"].itertuples():  # naive: |diff| <= 2 sqrt(std_ft^2 + std_odp^2)
        ref = table[(table.tokenizer == "odp") & (table.budget == r.budget) & (table.metric == r.metric)]["value"]
        band = 2 * math.sqrt(std[("ft", r.budget, r.metric)] ** 2 + std[("odp", r.budget, r.metric)] ** 2)
        assert r.diff_vs_ref == pytest.approx(r.value - ref.iloc[0])
        assert bool(r.within_noise) == (abs(r.value - ref.iloc[0]) <= band)
    assert table[table.tokenizer == "odp"]["within_noise"].isna().all()  # the reference itself
    meta = json.loads((folder / "meta.json").read_text())["extra"]
    assert meta["noise_seeds"]["seeds"] == [0, 1] and any("decoder noise" in n for n in meta["notes"])
    # the cross-family script shows the spread beside the differences, and each tokenizer's decode options
    x = _script("reproduce_cross_family")
    shown = x.noise_table(folder)
    assert list(shown.columns) == x.NOISE_COLUMNS and set(shown["tokenizer"]) == {"odp", "ft"}
    assert shown.loc[shown.tokenizer == "ft", "noise_std"].gt(0).all()
    assert x.decode_options(folder)["ft"] == {"steps": 2, "guidance": 7.5, "apg": True, "noise": "seeded"}
    # rerun: every sweep, the extra seed included, resumes without a rollout
    before = (folder / "noise_spread.csv").read_bytes()
    shards = {f: f.stat().st_mtime_ns for f in (folder / "sweeps").rglob("shards/*")}
    code, _, err = _cli(args, capsys)
    assert code == 0, err
    meta = json.loads((folder / "meta.json").read_text())["extra"]["tokenizers"]
    assert {n: t["rollout_calls"] for n, t in meta.items()} == {"odp": 0, "ft": 0}
    assert {f: f.stat().st_mtime_ns for f in (folder / "sweeps").rglob("shards/*")} == shards
    assert (folder / "noise_spread.csv").read_bytes() == before


def _script(name):
    import importlib
    import sys
    from pathlib import Path

    analyses = str(Path(__file__).resolve().parents[1] / "analyses")
    sys.path.insert(0, analyses)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(analyses)


def test_flag_within_marks_both_sides_of_the_band():
    table = pd.DataFrame({"tokenizer": ["r", "a", "b"], "budget": [4, 4, 4], "metric": ["l1"] * 3,
                          "value": [0.10, 0.105, 0.20]})
    spread = pd.DataFrame({"tokenizer": ["r", "a", "b"], "budget": [4, 4, 4], "metric": ["l1"] * 3,
                           "std": [0.003, 0.004, 0.004]})
    out = noise_spread.flag_within(table, spread, "r").set_index("tokenizer")
    assert out.loc["a", "noise_band"] == pytest.approx(2 * 0.005)
    assert out.loc["a", "within_noise"] == True  # noqa: E712 (|0.005| <= 0.01)
    assert out.loc["b", "within_noise"] == False  # noqa: E712 (|0.1| > 0.01)
    assert out.loc["r", "within_noise"] == ""
