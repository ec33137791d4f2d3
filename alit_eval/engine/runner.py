"""Set up a sweep-based command end to end: tokenizer, data source, run folder, sweep options.

Commands (`fid`, `allocate`, `familiarity`, ...) describe what they want in a `SweepRequest`; this
module turns it into the loaded tokenizer, the opened dataset and the exact config recorded in
``config.json`` (so a rerun with the same options resumes the same folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alit_eval.data.sources import Source, open_source
from alit_eval.engine.sweep import SweepConfig, resolve_device


@dataclass
class SweepRequest:
    """Options shared by every command that runs the sweep."""

    ckpt: str = "demo"
    data: str = "demo-scenes"
    budgets: list[int] | None = None
    preprocess: str | None = None
    limit: int | None = None
    subset_seed: int | None = None
    batch_size: int = 16
    halting: str | None = None
    workers: int = 0
    fid: bool = True
    fid_resize: str = "tf1"
    inception_weights: str | None = None
    lpips_weights: str | None = None
    official_truncation: bool = False
    strict: bool = False
    heads: int | None = None
    trust_checkpoint: bool = False
    capture: tuple[str, ...] = ()
    attention: bool | str = False
    n_examples: int = 6
    precision: str = "fp32"
    compile: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    tokenizer: Any
    checkpoint: dict[str, Any]
    source: Source
    sweep: SweepConfig
    config: dict[str, Any]


def prepare(req: SweepRequest, *, seed: int, device: str, offline: bool, progress: bool = True) -> Prepared:
    """Load the tokenizer and data and build the sweep config (nothing is computed yet)."""
    from alit_eval.tokenizers.base import check_budgets
    from alit_eval.tokenizers.pretrained import load_pretrained

    dev = resolve_device(device)
    tok, info = load_pretrained(req.ckpt, offline=offline, trust_checkpoint=req.trust_checkpoint,
                                heads=req.heads, halting=req.halting, device=str(dev))
    budgets = check_budgets(req.budgets or tok.budgets, tok.budgets)
    preprocess = req.preprocess or "resize-center-crop"
    source = open_source(req.data, size=tok.image_size, preprocess=preprocess, limit=req.limit,
                         subset_seed=req.subset_seed)
    sweep = SweepConfig(
        budgets=budgets, halting=info["halting"], seed=seed, batch_size=req.batch_size, workers=req.workers,
        device=str(dev), fid=req.fid, fid_resize=req.fid_resize, inception_weights=req.inception_weights,
        lpips_weights=req.lpips_weights, rounding="truncate" if req.official_truncation else "round",
        strict=req.strict, offline=offline, progress=progress, capture=tuple(req.capture),
        attention=req.attention, n_examples=req.n_examples, precision=req.precision, compile=req.compile,
    )
    config = {
        "checkpoint": {"name": info["name"], "sha256": info["sha256"], "heads": req.heads},
        "data": {"source": _portable(req.data), "kind": source.kind, "preprocess": source.preprocess, **source.info},
        "budgets": budgets, "halting": sweep.halting, "seed": seed, "fid": req.fid, "fid_resize": req.fid_resize,
        "inception_weights": req.inception_weights, "lpips_weights": req.lpips_weights,
        "rounding": sweep.rounding, "strict": req.strict, "precision": req.precision, **req.extra,
    }
    # Batch size and workers change speed, not numbers (seeded halting); the official halting
    # stream depends on the batch composition, so it is part of the config there.
    if sweep.halting in ("official", "official-reseeded"):
        config["batch_size"] = req.batch_size
    if req.capture:
        config["capture"] = sorted(req.capture)
        config["attention"] = req.attention
    return Prepared(tok, info, source, sweep, config)


def _portable(data: str) -> str:
    return data if data.startswith("demo-") else str(Path(data).expanduser().resolve())

