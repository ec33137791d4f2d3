"""The one sweep config: defaults resolved once (explicit option > pretrained entry > global default)."""

from __future__ import annotations

import json

from alit_eval.engine.config import DEFAULT_HALTING, DEFAULT_PREPROCESS, SweepConfig, resolve_defaults


def test_explicit_options_win():
    cfg, src = resolve_defaults(SweepConfig(budgets=[32], halting="off", preprocess="center-crop"),
                                model_budgets=[32, 64], entry_halting="official", entry_preprocess="resize-center-crop")
    assert (cfg.budgets, cfg.halting, cfg.preprocess) == ([32], "off", "center-crop")
    assert src == {"budgets": "option", "halting": "option", "preprocess": "option"}


def test_pretrained_entry_then_global_default():
    cfg, src = resolve_defaults(SweepConfig(), model_budgets=[32, 64], entry_halting="official",
                                entry_preprocess="center-crop")
    assert (cfg.budgets, cfg.halting, cfg.preprocess) == ([32, 64], "official", "center-crop")
    assert src == {"budgets": "checkpoint", "halting": "pretrained", "preprocess": "pretrained"}
    cfg, src = resolve_defaults(SweepConfig(), model_budgets=[8], entry_halting=None, entry_preprocess=None)
    assert (cfg.halting, cfg.preprocess) == (DEFAULT_HALTING, DEFAULT_PREPROCESS)
    assert src["halting"] == src["preprocess"] == "default"


def test_a_run_records_where_each_default_came_from(tmp_path, tiny_ckpt):
    from alit_eval.analysis.reconstruction import run

    run_dir, _ = run(SweepConfig(ckpt=str(tiny_ckpt), limit=2, batch_size=2, fid=False, preprocess="center-crop"),
                     seed=0, device="cpu", offline=True, results_dir=tmp_path, progress=False)
    meta = json.loads((run_dir.path / "meta.json").read_text())
    assert meta["extra"]["resolved_from"] == {"budgets": "checkpoint", "halting": "default", "preprocess": "option"}
    assert meta["extra"]["preprocess"] == "generated"  # demo splits are generated at the tokenizer's size
