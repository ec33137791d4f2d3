"""Set up a sweep-based command end to end: tokenizer, data source, run folder config.

Commands (`fid`, `allocate`, `familiarity`, ...) describe what they want in a `SweepConfig`
(`alit_eval.engine.config`); `prepare` loads the tokenizer, resolves the options left unset
(`resolve_defaults`), opens the dataset and builds the exact config recorded in ``config.json``
(so a rerun with the same options resumes the same folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from alit_eval.data.sources import Source, open_source
from alit_eval.engine.config import SweepConfig, resolve_defaults
from alit_eval.engine.device import resolve_device
from alit_eval.metrics import measures
from alit_eval.tokenizers.family_options import uses_global_stream

SweepRequest = SweepConfig  # former name (scripts written against it); new code uses SweepConfig


@dataclass
class Prepared:
    """A sweep ready to run: the loaded tokenizer, the dataset and the resolved config.

    Attributes:
        resolved_from: where each defaulted option's value came from (`resolve_defaults`).
    """

    tokenizer: Any
    checkpoint: dict[str, Any]
    source: Source
    sweep: SweepConfig
    config: dict[str, Any]
    resolved_from: dict[str, str] = field(default_factory=dict)


def prepare(req: SweepConfig, *, seed: int, device: str, offline: bool, progress: bool = True) -> Prepared:
    """Load the tokenizer and data and resolve the sweep config (nothing is computed yet)."""
    from alit_eval.tokenizers.family_queries import budgets_for, family_of
    from alit_eval.tokenizers.pretrained import PRETRAINED
    from alit_eval.tokenizers.resolve import load_pretrained

    dev = resolve_device(device)
    tok, info = load_pretrained(req.ckpt, offline=offline, trust_checkpoint=req.trust_checkpoint,
                                heads=req.heads, device=str(dev), family=req.family, **req.options)
    entry = PRETRAINED.get(req.ckpt) if req.ckpt in PRETRAINED else None
    fam = family_of(tok)
    sweep, resolved_from = resolve_defaults(
        replace(req, seed=seed, device=str(dev), offline=offline, progress=progress, capture=tuple(req.capture)),
        model_budgets=tok.budgets, entry_options=entry.options if entry else None, options=fam.options,
        entry_preprocess=info.get("default_preprocess"))
    # --budgets (list or budget syntax) > the pretrained entry's > the family's/tokenizer's default.
    sweep.budgets = budgets_for(tok, req.budgets, info.get("default_budgets"))
    if req.budgets is None and info.get("default_budgets"):
        resolved_from["budgets"] = "pretrained"
    # The options the model was loaded with (same precedence, applied by the loader); only the
    # loaded family's options (an option it lacks was refused by the loader when given).
    sweep.options = dict(info.get("options", {}))
    source = open_source(req.data, size=tok.image_size, preprocess=sweep.preprocess, limit=req.limit,
                         subset_seed=req.subset_seed, follow_symlinks=req.follow_symlinks)
    return Prepared(tok, info, source, sweep, record(sweep, info, source), resolved_from)


def record(sweep: SweepConfig, info: dict[str, Any], source: Source) -> dict[str, Any]:
    """The ``config.json`` of a resolved sweep: every option that changes its numbers."""
    from alit_eval.tokenizers.families import FAMILIES
    from alit_eval.tokenizers.family_options import run_identity

    fam = FAMILIES.get(info["family"]) if info.get("family") in FAMILIES else None
    config = {
        "checkpoint": {"name": info["name"], "sha256": info["sha256"], "heads": sweep.heads},
        "data": data_record(sweep.data, source),
        "budgets": sweep.budgets, "seed": sweep.seed, "fid": sweep.fid,
        "fid_resize": sweep.fid_resize, "inception_weights": sweep.inception_weights,
        "lpips_weights": sweep.lpips_weights, "rounding": sweep.rounding, "strict": sweep.strict,
        "precision": sweep.precision, **sweep.extra,
    }
    # The family's inference options that change the numbers (families without options add nothing,
    # so the run ids of earlier runs stay the same).
    config.update(run_identity(sweep.options, fam))
    # Batch size and workers change speed, not numbers (per-image generators); an official global
    # stream depends on the batch composition, so it is part of the config there.
    if uses_global_stream(sweep.options):
        config["batch_size"] = sweep.batch_size
    if measures.recorded(sweep):  # added measures (the built-ins are recorded by their own options above)
        config["measures"] = measures.recorded(sweep)
    if sweep.capture:
        config["capture"] = sorted(sweep.capture)
        config["attention"] = sweep.attention
    return config


def data_record(data: str, source: Source) -> dict[str, Any]:
    """The ``data`` entry of config.json: where the images come from and how they were opened."""
    return {"source": _portable(data), "kind": source.kind, "preprocess": source.preprocess, **source.info}


def _portable(data: str) -> str:
    return data if data.startswith("demo-") else str(Path(data).expanduser().resolve())
