"""The one sweep config: defaults resolved once (explicit option > pretrained entry > global default)."""

from __future__ import annotations

import json

from alit_eval.engine.config import DEFAULT_PREPROCESS, SweepConfig, resolve_defaults
from alit_eval.tokenizers.families import FAMILIES

ALIT_OPTIONS = FAMILIES.get("alit").options  # the declared options are what gets resolved
DEFAULT_HALTING = FAMILIES.get("alit").option_defaults()["halting"]


def test_explicit_options_win():
    cfg, src = resolve_defaults(SweepConfig(budgets=[32], halting="off", preprocess="center-crop"),
                                model_budgets=[32, 64], entry_options={"halting": "official"},
                                entry_preprocess="resize-center-crop", options=ALIT_OPTIONS)
    assert (cfg.budgets, cfg.halting, cfg.preprocess) == ([32], "off", "center-crop")
    assert src == {"budgets": "option", "halting": "option", "preprocess": "option"}


def test_pretrained_entry_then_global_default():
    cfg, src = resolve_defaults(SweepConfig(), model_budgets=[32, 64], entry_options={"halting": "official"},
                                entry_preprocess="center-crop", options=ALIT_OPTIONS)
    assert (cfg.budgets, cfg.halting, cfg.preprocess) == ([32, 64], "official", "center-crop")
    assert src == {"budgets": "checkpoint", "halting": "pretrained", "preprocess": "pretrained"}
    cfg, src = resolve_defaults(SweepConfig(), model_budgets=[8], entry_preprocess=None, options=ALIT_OPTIONS)
    assert (cfg.halting, cfg.preprocess) == (DEFAULT_HALTING, DEFAULT_PREPROCESS)
    assert src["halting"] == src["preprocess"] == "default"


def test_only_the_loaded_familys_options_are_resolved():
    cfg, src = resolve_defaults(SweepConfig(), model_budgets=[8], entry_preprocess=None, options=())
    assert cfg.options == {} and "halting" not in src and cfg.halting is None
    karl = FAMILIES.get("karl").options
    cfg, src = resolve_defaults(SweepConfig(epsilon=0.05), model_budgets=[8], entry_preprocess=None, options=karl)
    assert cfg.options == {"epsilon": 0.05, "halting": "seeded"} and src["epsilon"] == "option"


def test_a_run_records_where_each_default_came_from(tmp_path, tiny_ckpt):
    from alit_eval.analysis.reconstruction import run

    run_dir, _ = run(SweepConfig(ckpt=str(tiny_ckpt), limit=2, batch_size=2, fid=False, preprocess="center-crop"),
                     seed=0, device="cpu", offline=True, results_dir=tmp_path, progress=False)
    meta = json.loads((run_dir.path / "meta.json").read_text())
    assert meta["extra"]["resolved_from"] == {"budgets": "checkpoint", "halting": "default", "preprocess": "option"}
    assert meta["extra"]["preprocess"] == "generated"  # demo splits are generated at the tokenizer's size
