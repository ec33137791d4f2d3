"""The one sweep configuration, from the command line to the engine, and its default resolution.

`SweepConfig` holds every option of a sweep: what to load (checkpoint, data), what to compute
(budgets, FID, LPIPS, captures) and how (batch size, precision, device). The CLI fills it from the
shared options in `alit_eval.cli.options`; fields left ``None`` (``budgets``, ``halting``,
``preprocess``) are resolved once, in `resolve_defaults`, by the rule (as timm does):

    explicit option > the checkpoint's pretrained entry (or the checkpoint itself) > global default

and the source of each resolved value goes to ``meta.json`` as ``resolved_from``.

Stdlib only at import time: the CLI builds this before any heavy import.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_PREPROCESS = "resize-center-crop"
DEFAULT_HALTING = "seeded"


@dataclass
class SweepConfig:
    """Options of one sweep (everything that changes its numbers is recorded in config.json).

    ``None`` in `budgets`, `halting` or `preprocess` means "not given": `resolve_defaults` fills it.
    `seed`, `device`, `offline` and `progress` come from the global options and are set by
    `alit_eval.engine.prepare.prepare`.
    """

    ckpt: str = "demo"
    data: str = "demo-scenes"
    budgets: list[int] | str | None = None  # a string in the budget syntax is expanded against the tokenizer
    family: str | None = None  # --family: force the tokenizer family (default: recognised from the keys)
    epsilon: float | None = None  # a family inference option (KARL); None: the checkpoint's/family's default
    preprocess: str | None = None
    limit: int | None = None
    subset_seed: int | None = None
    follow_symlinks: bool = False  # follow symlinks that leave the data folder (recorded in the data entry)
    halting: str | None = None
    heads: int | None = None
    trust_checkpoint: bool = False
    seed: int = 0
    batch_size: int = 16
    workers: int = 0
    device: str = "cpu"
    fid: bool = True
    fid_resize: str = "tf1"
    inception_weights: str | None = None
    lpips_weights: str | None = None
    measures: tuple[str, ...] = ()  # added measures to compute beyond the default ones (alit_eval.metrics.measures)
    rounding: str = "round"  # round | truncate (the official PNG writer's uint8 truncation)
    strict: bool = False
    n_examples: int = 6
    offline: bool = False
    progress: bool = True
    capture: tuple[str, ...] = ()  # names in engine.sweep.CAPTURES: extra per-image arrays stored per budget
    attention: bool | str = False  # passed to rollout when a capture needs attention maps
    precision: str = "fp32"  # fp32 | bf16 | tf32 (engine/fastpath.py)
    compile: bool = False
    save_recons: str | None = None  # folder for every reconstruction as PNG (engine/recons.py); not in config.json
    extra: dict[str, Any] = field(default_factory=dict)  # command-specific entries of config.json


def resolve_defaults(cfg: SweepConfig, *, model_budgets: list[int], entry_halting: str | None,
                     entry_preprocess: str | None) -> tuple[SweepConfig, dict[str, str]]:
    """Fill the options left ``None``: explicit option > pretrained entry / checkpoint > global default.

    Args:
        cfg: the config as given (``None`` = not given).
        model_budgets: the budgets the loaded checkpoint can produce.
        entry_halting: the pretrained entry's halting policy (None for a checkpoint file).
        entry_preprocess: the pretrained entry's preprocess mode (None for a checkpoint file).

    Returns:
        The resolved config and, per resolved option, where its value came from: ``"option"``,
        ``"pretrained"`` (the pretrained table), ``"checkpoint"`` (the loaded model) or ``"default"``.
    """
    sources: dict[str, str] = {}

    def pick(name: str, given: Any, entry: Any, default: Any, entry_source: str = "pretrained") -> Any:
        if given is not None:
            sources[name] = "option"
            return given
        if entry is not None:
            sources[name] = entry_source
            return entry
        sources[name] = "default"
        return default

    budgets = pick("budgets", cfg.budgets, list(model_budgets), None, "checkpoint")
    halting = pick("halting", cfg.halting, entry_halting, DEFAULT_HALTING)
    preprocess = pick("preprocess", cfg.preprocess, entry_preprocess, DEFAULT_PREPROCESS)
    return replace(cfg, budgets=budgets, halting=halting, preprocess=preprocess), sources
