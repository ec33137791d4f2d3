"""Measures are pluggable: a toy measure defined only in this file reaches `fid`'s metrics table,
``per_image.parquet``, a resumed sweep and `compare`, checked against naive recomputations (the
pixel L1 the built-in measure stores, and the toy's features read back from the shards)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from alit_eval.cli.app import app
from alit_eval.metrics import specs
from alit_eval.metrics.measures import (
    MEASURES, Measure, Meter, SetView, active_measures, feature_keys, register_measure, unregister_measure)
from alit_eval.metrics.specs import MetricSpec
from conftest import make_tiny_alit


class _ToyMeter(Meter):
    def per_image(self, rec_u8: Any, ref_u8: Any, *, raw: Any = None, x: Any = None) -> dict[str, Any]:
        # Twice the pixel L1: checkable against the built-in l1 column.
        return {"toy_abs": 2 * (rec_u8.double() - ref_u8.double()).abs().flatten(1).mean(1) / 255}

    def features(self, images_u8: Any) -> Any:
        return (images_u8.float().mean(dim=(2, 3)) / 255).numpy().astype(np.float32)  # mean colour, [N, 3]


@dataclass
class ToyMeasure(Measure):
    def open(self, cfg: Any, device: Any) -> tuple[Meter | None, Any]:
        return _ToyMeter(), {"toy": "on"}

    def set_rows(self, view: SetView) -> list[dict[str, Any]]:
        result = view.result
        stats = view.accumulate(result.store, feature_keys(result.budgets, "toyf"))
        ref = stats["toyf_ref"].mean()
        return [{"budget": b, "metric": "toy_gap", "value": float(np.linalg.norm(stats[f"toyf_{b}"].mean() - ref)),
                 "n": int(stats[f"toyf_{b}"].n), "ci_low": None, "ci_high": None, "condition": {}}
                for b in result.budgets]


@pytest.fixture
def toy():
    measure = register_measure(ToyMeasure(
        "toy", specs=(MetricSpec("toy_abs", False, "image", "", "toy: twice the pixel L1", label="TOY", family="toy"),
                      MetricSpec("toy_gap", False, "set", "", "toy: distance of the mean colours", family="toy")),
        columns=("toy_abs",), feature_key="toyf", info_key="toy"))
    yield measure
    unregister_measure("toy")
    assert "toy" not in MEASURES and "toy_abs" not in specs.TABLE


def _shard_gap(run: Any, budgets: list[int]) -> dict[int, float]:
    """The toy's set statistic recomputed naively from every shard's stored features."""
    feats: dict[str, list[np.ndarray]] = {}
    for shard in sorted((run / "shards").glob("*.npz")):
        with np.load(shard) as z:
            for key in feature_keys(budgets, "toyf"):
                if key in z.files and len(z[key]):
                    feats.setdefault(key, []).append(z[key].astype(np.float64))
    ref = np.concatenate(feats["toyf_ref"]).mean(0)
    return {b: float(np.linalg.norm(np.concatenate(feats[f"toyf_{b}"]).mean(0) - ref)) for b in budgets}


def test_builtin_measures_and_switches():
    from alit_eval.engine.config import SweepConfig

    names = [m.name for m in active_measures(SweepConfig())]
    assert names == ["pixel", "lpips", "inception"]
    assert [m.name for m in active_measures(SweepConfig(fid=False))] == ["pixel", "lpips"]
    assert set(specs.PER_IMAGE) == {"l1", "mse", "psnr", "ssim", "lpips"}  # built-ins only outside the toy test


def test_toy_measure_in_fid_table_per_image_resume_and_compare(toy, tmp_path, tiny_ckpt):
    from alit_eval.analysis.reconstruction import run as fid_run
    from alit_eval.engine.config import SweepConfig

    budgets = [4, 8]
    cfg = SweepConfig(ckpt=str(tiny_ckpt), data="demo-scenes", budgets=budgets, limit=2, batch_size=1, fid=False)

    def stop(_n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # an interrupted sweep: one batch of one image stored
        fid_run(cfg, seed=0, device="cpu", offline=True, results_dir=tmp_path, run_id="t", on_batch=stop,
                progress=False)
    args = ["--results-dir", str(tmp_path), "--device", "cpu", "fid", "--ckpt", str(tiny_ckpt), "--data",
            "demo-scenes", "--limit", "2", "--batch-size", "1", "--no-fid", "--budgets", "4,8", "--run-id", "t"]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    run = tmp_path / "fid" / "t"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["extra"]["rollout_calls"] == 1  # resumed: only the second batch was reconstructed
    assert json.loads((run / "config.json").read_text())["measures"] == ["toy"]
    per_image = pd.read_parquet(run / "per_image.parquet")
    assert per_image["image_id"].nunique() == 2 and per_image["toy_abs"].notna().all()
    np.testing.assert_allclose(per_image["toy_abs"], 2 * per_image["l1"], rtol=1e-12)
    metrics = pd.read_csv(run / "metrics.csv")
    for b in budgets:
        row = metrics[(metrics.metric == "toy_abs") & (metrics.budget == b)].iloc[0]
        assert row["value"] == pytest.approx(per_image.loc[per_image.budget == b, "toy_abs"].mean())
    gaps = metrics[metrics.metric == "toy_gap"].set_index("budget")["value"]
    assert gaps.to_dict() == pytest.approx(_shard_gap(run, budgets))
    assert "toy_abs" in res.output and "toy_gap" in res.output  # the printed table has its columns
    # compare: two tokenizers, the toy's rows in the tidy table
    other = make_tiny_alit(tmp_path / "b.safetensors", seed=1)
    res = CliRunner().invoke(app, ["--results-dir", str(tmp_path), "--device", "cpu", "compare", "--ckpt",
                                   str(tiny_ckpt), "--ckpt", f"bb={other}", "--data", "demo-scenes", "--limit", "2",
                                   "--no-fid", "--budgets", "4,8", "--n-boot", "20", "--run-id", "c"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "compare" / "c" / "compare.csv")
    toy_rows = table[table.metric.isin(["toy_abs", "toy_gap"])]
    assert len(toy_rows) == 2 * 2 * 2 and (toy_rows["status"] == "measured").all()
