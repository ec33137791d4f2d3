"""The one sweep configuration, from the command line to the engine, and its default resolution.

`SweepConfig` holds every option of a sweep: what to load (checkpoint, data), what to compute
(budgets, FID, LPIPS, captures) and how (batch size, precision, device). The CLI fills it from the
shared options in `alit_eval.cli.options`. The families' inference options (declared in each
family's folder, `alit_eval.tokenizers.options`) are one dict, ``options``, that names none of them;
they can also be given and read as keywords/attributes (``SweepConfig(halting="off")``,
``cfg.halting``). Values left ``None`` (``budgets``, ``preprocess``, each option) are resolved once,
in `resolve_defaults`, by the rule (as timm does):

    explicit option > the checkpoint's pretrained entry (or the checkpoint itself) > declared default

and the source of each resolved value goes to ``meta.json`` as ``resolved_from``.

Stdlib only at import time: the CLI builds this before any heavy import.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping, Sequence

from alit_eval.tokenizers.family_options import all_option_names

DEFAULT_PREPROCESS = "resize-center-crop"


@dataclass
class _SweepFields:
    """Options of one sweep (everything that changes its numbers is recorded in config.json).

    ``None`` in `budgets`, `preprocess` or an entry of `options` means "not given": `resolve_defaults` fills it.
    `seed`, `device`, `offline` and `progress` come from the global options and are set by
    `alit_eval.engine.prepare.prepare`.
    """

    ckpt: str = "demo"
    data: str = "demo-scenes"
    budgets: list[int] | str | None = None  # a string in the budget syntax is expanded against the tokenizer
    family: str | None = None  # --family: force the tokenizer family (default: recognised from the keys)
    preprocess: str | None = None
    limit: int | None = None
    subset_seed: int | None = None
    follow_symlinks: bool = False  # follow symlinks that leave the data folder (recorded in the data entry)
    options: dict[str, Any] = field(default_factory=dict)  # the families' inference options, by declared name
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
    # --noise-seeds: repeat the sweep with this many seeds (analysis/noise_spread.py); each repetition is
    # an ordinary sweep whose config differs only in `seed`, so this is not in a sweep's config.json.
    noise_seeds: int = 1
    extra: dict[str, Any] = field(default_factory=dict)  # command-specific entries of config.json


class SweepConfig(_SweepFields):
    __doc__ = _SweepFields.__doc__

    def __init__(self, **kwargs: Any) -> None:
        # A family option given as a keyword (``halting="off"``) lands in `options`.
        options = dict(kwargs.pop("options", None) or {})
        known = {f.name for f in fields(_SweepFields)}
        names = all_option_names()
        for key in [k for k in kwargs if k not in known and k in names]:
            options[key] = kwargs.pop(key)
        super().__init__(options=options, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Reached only for names that are not fields: a declared option reads as an attribute.
        if name != "options" and name in all_option_names():
            return self.__dict__.get("options", {}).get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _FIELD_NAMES and name in all_option_names():
            self.options[name] = value
        else:
            super().__setattr__(name, value)


_FIELD_NAMES = frozenset(f.name for f in fields(_SweepFields))


def resolve_defaults(cfg: SweepConfig, *, model_budgets: list[int], entry_preprocess: str | None,
                     entry_options: Mapping[str, Any] | None = None, options: Sequence[Any] = (),
                     **entry_values: Any) -> tuple[SweepConfig, dict[str, str]]:
    """Fill the values left ``None``: explicit option > pretrained entry / checkpoint > declared default.

    Args:
        cfg: the config as given (``None`` = not given).
        model_budgets: the budgets the loaded checkpoint can produce.
        entry_preprocess: the pretrained entry's preprocess mode (None for a checkpoint file).
        entry_options: the pretrained entry's inference options (None for a checkpoint file).
        options: the loaded family's option declarations (`InferenceOption`); only these are resolved.
        **entry_values: ``entry_<name>=value``, the former way to pass one entry option.

    Returns:
        The resolved config and, per resolved value, where it came from: ``"option"``, ``"pretrained"``
        (the pretrained table), ``"checkpoint"`` (the loaded model) or ``"default"``.
    """
    entry = dict(entry_options or {})
    for key, value in entry_values.items():
        if not key.startswith("entry_"):
            raise TypeError(f"resolve_defaults() got an unexpected keyword argument {key!r}")
        entry.setdefault(key.removeprefix("entry_"), value)
    sources: dict[str, str] = {}

    def pick(name: str, given: Any, from_entry: Any, default: Any, entry_source: str = "pretrained") -> Any:
        if given is not None:
            sources[name] = "option"
            return given
        if from_entry is not None:
            sources[name] = entry_source
            return from_entry
        sources[name] = "default"
        return default

    budgets = pick("budgets", cfg.budgets, list(model_budgets), None, "checkpoint")
    values = dict(cfg.options)
    for o in options:
        values[o.name] = pick(o.name, cfg.options.get(o.name), entry.get(o.name), o.default)
    preprocess = pick("preprocess", cfg.preprocess, entry_preprocess, DEFAULT_PREPROCESS)
    return replace(cfg, budgets=budgets, options=values, preprocess=preprocess), sources
