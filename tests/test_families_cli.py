"""Every family through the CLI: `fid` end to end on each fixture checkpoint (2 demo images, FID off),
--family / --epsilon / --budgets syntax, one-line errors, profile and attention-viz; and the engine,
analysis and CLI packages name no tokenizer family."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from alit_eval.cli.app import app, main
from conftest import REPO, shared_dir

runner = CliRunner()
FIX = shared_dir() / "fixtures"
ALIT_VQ = FIX / "official_alit" / "vqgan_quantized" / "checkpoint.pth"
KARL_VQ = FIX / "official_karl" / "vqgan_quantized" / "checkpoint.pth"
ODP_TINY = FIX / "official_one_d_piece" / "one_d_piece_tiny" / "pytorch_model.bin"
needs = pytest.mark.skipif(not all(p.is_file() for p in (ALIT_VQ, KARL_VQ, ODP_TINY)),
                           reason="shared fixtures not available (set ALIT_EVAL_SHARED)")


def _fid(tmp_path: Path, *args: str):
    result = runner.invoke(app, ["--device", "cpu", "--results-dir", str(tmp_path), "fid", "--limit", "2",
                                 "--no-fid", "--no-compute", "--batch-size", "2", *args])
    return result


def _run_dir(tmp_path: Path) -> Path:
    (run,) = [p for p in (tmp_path / "fid").iterdir() if p.is_dir()]
    return run


@needs
@pytest.mark.parametrize("ckpt, args, family, budgets", [
    # Few pixel decodes: the budget syntax itself is covered by test_budgets.py / test_families.py.
    (ALIT_VQ, ["--budgets", "192,224,..."], "alit", [192, 224, 256]),
    (KARL_VQ, ["--budgets", "32,64", "--epsilon", "0.05"], "karl", [32, 64]),
    (ODP_TINY, ["--heads", "4", "--budgets", "64,128,256"], "one_d_piece", [64, 128, 256]),
    (ODP_TINY, ["--heads", "4", "--family", "titok"], "titok", [256]),
])
def test_fid_runs_end_to_end_for_every_family(tmp_path, one_torch_thread, ckpt, args, family, budgets):
    result = _fid(tmp_path, "--ckpt", str(ckpt), *args)
    assert result.exit_code == 0, result.output
    run = _run_dir(tmp_path)
    per_image = pd.read_parquet(run / "per_image.parquet")
    assert sorted(per_image["budget"].unique()) == budgets and per_image["image_id"].nunique() == 2
    assert per_image["l1"].between(0, 1).all()
    meta = json.loads((run / "meta.json").read_text())["extra"]
    assert meta["checkpoint"]["family"] == family
    config = json.loads((run / "config.json").read_text())
    if family == "karl":  # the inference option is part of the run's identity; halting masks slots
        assert config["options"] == {"epsilon": 0.05} and meta["checkpoint"]["options"]["epsilon"] == 0.05
        assert (per_image["tokens_used"] <= per_image["budget"]).all()
    else:
        assert "options" not in config and (per_image["tokens_used"] == per_image["budget"]).all()
    if family in ("one_d_piece", "titok"):
        assert config["halting"] is None and meta["checkpoint"]["halting"] is None


@needs
@pytest.mark.parametrize("args, fragment", [
    (["--ckpt", str(ODP_TINY), "--heads", "4", "--halting", "off"],
     "--halting applies only to alit, karl; this checkpoint is One-D-Piece"),
    (["--ckpt", str(ODP_TINY), "--heads", "4", "--budgets", "8-512:8"],
     "--budgets: budget(s) 264, 272, 280, 288, 296 (+27 more) not available; this tokenizer produces 1..256"),
    (["--ckpt", str(ALIT_VQ), "--epsilon", "0.05"], "--epsilon applies only to karl; this checkpoint is ALIT"),
    (["--ckpt", str(ALIT_VQ), "--budgets", "48"], "this tokenizer produces 32, 64, ..., 256"),
    (["--ckpt", str(KARL_VQ), "--family", "one_d_piece"], "is not a One-D-Piece/TiTok checkpoint"),
    (["--ckpt", str(KARL_VQ), "--family", "tiktok"], "unknown tokenizer family 'tiktok'. Did you mean 'titok'?"),
    (["--ckpt", str(ALIT_VQ), "--budgets", "32,48,80,..."], "neither"),
])
def test_family_errors_are_one_line(tmp_path, capsys, args, fragment):
    code, err = _main_fid(tmp_path, capsys, *args)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err


def _main_fid(tmp_path: Path, capsys, *args: str) -> tuple[int, str]:
    """Run the console entry point (errors become one `error:` line and exit code 2)."""
    with pytest.raises(SystemExit) as info:
        main(["--device", "cpu", "--results-dir", str(tmp_path), "fid", "--limit", "2", "--no-fid", *args])
    return int(info.value.code or 0), capsys.readouterr().err


def test_unknown_family_checkpoint_names_the_families(tmp_path, capsys):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3, 1, 1), "fc.bias": torch.zeros(2)}, path)
    code, err = _main_fid(tmp_path, capsys, "--ckpt", str(path))
    assert code == 2
    assert "not a checkpoint of a known tokenizer family (alit, karl, one_d_piece, titok, flextok)" in err
    assert "pass --family NAME" in err


@needs
def test_profile_splits_flops_by_the_family_components(tmp_path, one_torch_thread):
    result = runner.invoke(app, ["--device", "cpu", "--results-dir", str(tmp_path), "profile", "--ckpt", str(ODP_TINY),
                                 "--heads", "4", "--budgets", "1,256", "--no-fid", "--repeats", "1", "--warmup", "0"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "profile").iterdir()
    table = pd.read_csv(run / "compute.csv")
    comps = ["encoder", "quantizer", "decoder", "soft_code", "pixel_decoder", "other"]
    assert [c for c in table.columns if c.startswith("gflops_")] == [f"gflops_{c}" for c in comps]
    roll = table[table["stage"] == "rollout"].set_index("budget")
    # the decoder grows with the prefix; the encoder always encodes all N tokens
    assert roll.loc[256, "gflops_decoder"] > roll.loc[1, "gflops_decoder"]
    assert roll.loc[256, "gflops_encoder"] == pytest.approx(roll.loc[1, "gflops_encoder"])


@needs
def test_attention_viz_for_karl(tmp_path, one_torch_thread):
    result = runner.invoke(app, ["--device", "cpu", "attention-viz", "--ckpt", str(KARL_VQ), "--budgets", "8,16",
                                 "--tokens", "0,3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (npz,) = tmp_path.glob("*.npz")
    import numpy as np

    maps = np.load(npz)["attention_8"]
    assert maps.shape[0] == 8 and np.all(maps >= 0)
    bad = runner.invoke(app, ["--device", "cpu", "attention-viz", "--ckpt", str(KARL_VQ), "--indexing",
                              "official-notebook", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "exists only for alit" in str(bad.exception)


# ------------------------------------------------------------------ nothing outside tokenizers/ names a family

FAMILY_NAMES = re.compile(
    r"tokenizers\.(alit|karl|one_d_piece)\b|tokenizers import (alit|karl|one_d_piece)\b"
    r"|\b(AlitTokenizer|AlitConfig|KarlTokenizer|KarlConfig|OneDPieceTokenizer|OneDPieceConfig)\b"
    r"|[\"'](alit|karl|one_d_piece|titok)[\"']"
)


def test_engine_analysis_and_cli_name_no_family():
    offenders = []
    for package in ("engine", "analysis", "cli"):
        for path in sorted((REPO / "alit_eval" / package).rglob("*.py")):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if FAMILY_NAMES.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert not offenders, "family named outside tokenizers/ (use alit_eval.tokenizers.family_*):\n" + "\n".join(offenders)
    # and the scan would catch one
    assert FAMILY_NAMES.search("from alit_eval.tokenizers.karl.model import KarlTokenizer")
    assert FAMILY_NAMES.search('if fam == "titok":')


@needs
def test_allocate_epsilon_is_karls_own_criterion(tmp_path, capsys, one_torch_thread):
    result = runner.invoke(app, ["--device", "cpu", "--results-dir", str(tmp_path), "allocate", "--ckpt", str(KARL_VQ),
                                 "--limit", "2", "--no-fid", "--budgets", "16,24", "--criterion", "epsilon",
                                 "--thresholds", "0.03,0.09"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "allocate").iterdir()
    summary = pd.read_csv(run / "allocation_summary.csv")
    assert summary["threshold"].tolist() == [0.03, 0.09] and (summary["budget"] == 24).all()
    assert summary["mean_tokens"].between(0, 24).all()
    selection = pd.read_parquet(run / "selection.parquet")
    assert len(selection) == 4 and (selection["tokens"] <= 24).all()
    assert sorted(p.name for p in (run / "sweeps").iterdir()) == ["epsilon_0.03", "epsilon_0.09"]
    metrics = pd.read_csv(run / "metrics.csv")
    assert set(metrics[metrics["metric"] == "tokens"]["condition"]) == {
        "criterion=epsilon;threshold=0.03", "criterion=epsilon;threshold=0.09"}
    # a family whose model has no such criterion: one line naming the family that has it
    with pytest.raises(SystemExit) as info:
        main(["--device", "cpu", "--results-dir", str(tmp_path), "allocate", "--ckpt", str(ODP_TINY), "--heads", "4",
              "--limit", "2", "--no-fid", "--budgets", "4", "--criterion", "epsilon"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err == ("error: --criterion epsilon is applied by the tokenizer itself, which only "
                                            "karl does; this checkpoint is One-D-Piece (use l1, psnr, ... instead)")
