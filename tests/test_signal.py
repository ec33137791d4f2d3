"""The budget-signal guard: a metric flat across budgets is flagged in the log, the CSVs and the report."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from alit_eval.analysis.allocate import run as run_allocate
from alit_eval.analysis.signal import budget_signal
from alit_eval.engine.config import SweepConfig
from alit_eval.engine.store import ShardStore

BUDGETS = [4, 8, 12, 16]


def _table(values: np.ndarray) -> pd.DataFrame:
    rows = [{"image_id": f"img{i}", "index": i, "budget": b, "label": "x", "l1": v, "mse": v * v,
             "psnr": -10 * np.log10(v * v), "ssim": 1 - v, "halted_2d": 0}
            for i, row in enumerate(values) for b, v in zip(BUDGETS, row)]
    return pd.DataFrame(rows)


def _flat(n=40, seed=0):
    # Random-weight-like: image levels spread over 0.2..0.5, a tiny systematic drift (2e-4 over the
    # budgets, always in the good direction, so a paired test alone would call it significant) and jitter.
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.2, 0.5, size=(n, 1))
    return level - np.linspace(0, 2e-4, len(BUDGETS)) + rng.normal(scale=2e-5, size=(n, len(BUDGETS)))


def _learning(n=40, seed=0):
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.05, 0.2, size=(n, 1))
    return level * np.array([1.0, 0.8, 0.7, 0.65]) + rng.normal(scale=1e-4, size=(n, len(BUDGETS)))


def test_verdicts_on_synthetic_tables():
    flat = budget_signal(_table(_flat()), "l1")
    assert flat.verdict == "flat" and flat.p_value < 1e-3  # significant, yet flat: the effect size decides
    assert flat.effect == pytest.approx(2e-4, rel=0.3) and flat.spread > 0.05
    ok = budget_signal(_table(_learning()), "l1")
    assert ok.verdict == "ok" and ok.effect > 0.02
    # direction: PSNR improves upwards; the same tables give the same verdicts
    assert budget_signal(_table(_learning()), "psnr", higher_is_better=True).verdict == "ok"
    assert budget_signal(_table(_flat()), "psnr", higher_is_better=True).verdict == "flat"
    # a metric that gets worse with tokens is flat too (no improvement)
    assert budget_signal(_table(_learning()[:, ::-1]), "l1").verdict == "flat"
    assert budget_signal(_table(_flat(n=3)), "l1").verdict == "too-few-images"


def _fake_run(folder, values):
    folder.mkdir(parents=True)
    _table(values).to_parquet(folder / "per_image.parquet", index=False)
    ids = np.array([f"img{i}" for i in range(len(values))])
    ShardStore(folder).write(0, {"index": np.arange(len(values)), "id": ids})
    (folder / "config.json").write_text(json.dumps({
        "data": {"source": "demo-scenes", "kind": "demo", "preprocess": "generated", "n": len(values), "size": 32},
        "budgets": BUDGETS, "fid": False, "fid_resize": "tf1", "checkpoint": {"name": "fake", "sha256": None}}))
    return folder


@pytest.mark.parametrize("kind", ["flat", "learning"])
def test_allocate_flags_a_flat_metric_in_log_csv_and_report(kind, tmp_path, caplog):
    from alit_eval.results.report import run_warnings
    from alit_eval.results.report_runs import load_run

    values = _flat() if kind == "flat" else _learning()
    src = _fake_run(tmp_path / "sweep", values)
    with caplog.at_level(logging.WARNING):
        r, _, _ = run_allocate(SweepConfig(fid=False), from_run=str(src), thresholds=["auto"], gallery=False,
                               results_dir=tmp_path / "res", progress=False, figures=False)
    warned = [rec.getMessage() for rec in caplog.records if "NO BUDGET SIGNAL" in rec.getMessage()]
    summary = pd.read_csv(r.path / "allocation_summary.csv")
    report = [w for w in run_warnings(load_run(r.path)) if "NO BUDGET SIGNAL" in w]
    if kind == "flat":
        assert len(warned) == 1 and "l1 metric barely changes" in warned[0]
        assert (summary["budget_signal"] == "flat").all()
        assert len(report) == 1
    else:
        assert not warned and not report and (summary["budget_signal"] == "ok").all()


def test_entropy_correlation_on_a_random_weight_tokenizer_is_flagged(tiny_ckpt, tmp_path, caplog):
    from alit_eval.analysis.entropy_correlation import run

    req = SweepConfig(ckpt=str(tiny_ckpt), data="demo-scenes", limit=12, batch_size=6, fid=False)
    with caplog.at_level(logging.WARNING):
        r, table = run(req, from_run=None, thresholds=["auto"], results_dir=tmp_path, progress=False,
                       figures=False)
    assert any("NO BUDGET SIGNAL" in rec.getMessage() for rec in caplog.records)
    csv = pd.read_csv(r.path / "correlations.csv")
    assert (csv["budget_signal"] == "flat").all() and len(csv)
    assert json.loads((r.path / "meta.json").read_text())["extra"]["budget_signal"]["verdict"] == "flat"
