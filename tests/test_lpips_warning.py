"""LPIPS is mentioned only where it was asked for or would be in the table."""

from __future__ import annotations

import logging

from typer.testing import CliRunner

from alit_eval.cli.app import app


def _invoke(args, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no AlexNet backbone in the hub cache
    with caplog.at_level(logging.INFO):
        res = CliRunner().invoke(app, ["--results-dir", str(tmp_path), "--device", "cpu", *args])
    assert res.exit_code == 0, res.output
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "LPIPS" in r.getMessage()]
    return res, warned


def test_a_command_without_lpips_emits_no_lpips_warning(tiny_ckpt, tmp_path, monkeypatch, caplog):
    res, warned = _invoke(["allocate", "--ckpt", str(tiny_ckpt), "--limit", "4", "--batch-size", "4", "--no-fid",
                           "--no-gallery", "--thresholds", "auto"], tmp_path, monkeypatch, caplog)
    assert not warned and "LPIPS" not in res.output
    # still recorded, for whoever looks for it
    assert any("LPIPS skipped" in r.getMessage() for r in caplog.records)


def test_fid_says_why_its_table_has_no_lpips_column(tiny_ckpt, tmp_path, monkeypatch, caplog):
    res, _ = _invoke(["fid", "--ckpt", str(tiny_ckpt), "--limit", "4", "--batch-size", "4", "--no-fid"],
                     tmp_path, monkeypatch, caplog)
    assert "no LPIPS column: LPIPS skipped" in res.output and "--lpips-weights" in res.output
