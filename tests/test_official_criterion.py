"""The ``official-l1`` allocation criterion: the engine's ``l1_raw`` equals the official encode() L1, and
`allocate --criterion official-l1` picks what `official_token_selection` picks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from typer.testing import CliRunner

from alit_eval.analysis.allocate import run as run_allocate
from alit_eval.cli.app import app
from alit_eval.engine.config import SweepConfig
from alit_eval.tokenizers.alit.selection import official_token_selection
from alit_eval.tokenizers.checkpoints import load_alit_checkpoint


def test_official_l1_criterion_matches_the_public_official_selection(tiny_ckpt, tmp_path):
    from alit_eval.data.demo import generate

    req = SweepConfig(ckpt=str(tiny_ckpt), data="demo-scenes", limit=6, batch_size=1, fid=False, halting="off")
    r, _, sel = run_allocate(req, from_run=None, thresholds=["q0.3", "q0.7", "0"], criterion="official-l1",
                             gallery=False, results_dir=tmp_path, progress=False, figures=False)
    per = pd.read_parquet(r.path / "per_image.parquet")
    assert per["l1_raw"].notna().all()
    model = load_alit_checkpoint(tiny_ckpt, halting="off")
    x = torch.from_numpy(np.stack([generate("demo-scenes", i, size=32).image for i in range(6)]))
    x = x.permute(0, 3, 1, 2).float() / 255
    ours = official_token_selection(model, x, 0.0, halting="off")
    raw = per.pivot(index="index", columns="budget", values="l1_raw").to_numpy()
    np.testing.assert_allclose(raw, [s.l1_per_iteration for s in ours], rtol=0, atol=1e-6)
    # The raw L1 is not the clamped uint8 one the `l1` criterion uses.
    assert np.abs(raw - per.pivot(index="index", columns="budget", values="l1").to_numpy()).max() > 1e-4
    for thr, g in sel.groupby("threshold"):
        expect = official_token_selection(model, x, thr, halting="off")
        assert g["criterion"].eq("official-l1").all()
        assert g.sort_values("index")["selected_budget"].tolist() == [s.returned_num_tokens for s in expect]
        assert g.sort_values("index")["censored"].tolist() == [s.returned_by == "fallback_min_l1" for s in expect]
    # The CLI accepts the criterion and shows the adaptive raw L1 under its name.
    res = CliRunner().invoke(app, ["--results-dir", str(tmp_path / "cli"), "allocate", "--from-run", str(r.path),
                                   "--criterion", "official-l1", "--no-gallery"])
    assert res.exit_code == 0, res.output
    summary = pd.read_csv(next((tmp_path / "cli" / "allocate").iterdir()) / "allocation_summary.csv")
    assert "adaptive_l1_raw" in summary and "official-l1" in res.output
