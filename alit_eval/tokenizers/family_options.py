"""The inference options of every registered family together: the CLI's flags, the run identity and
the global-stream policy.

Each family declares its own options (`alit_eval.tokenizers.options.InferenceOption`, in its folder);
this module merges them across `alit_eval.tokenizers.families.FAMILIES` for what is shared by all
families: the flags of every sweep command and `SweepConfig.options` (`all_options`), the
``config.json`` entries that identify a run (`run_identity`, `top_level_names`), and whether option
values select an official global-stream policy and how that stream is seeded (`uses_global_stream`,
`start_global_stream`). It names no family and imports no torch at import time.
"""

from __future__ import annotations

from typing import Any, Mapping

from alit_eval.registry import resolve_target
from alit_eval.tokenizers.families import FAMILIES, Family, get_family
from alit_eval.tokenizers.options import MergedOption, merged


def all_options() -> list[MergedOption]:
    """Every registered family's inference options, one per name (the CLI's flags, `SweepConfig.options`)."""
    return merged((f.title, f.options) for _, f in FAMILIES.items())


def all_option_names() -> tuple[str, ...]:
    return tuple(o.name for o in all_options())


def top_level_names() -> tuple[str, ...]:
    """Options recorded as top-level keys of ``config.json``/``meta.json`` (`InferenceOption.top_level`)."""
    return tuple(o.name for o in all_options() if any(d.top_level for _, d in o.declarations))


def uses_global_stream(values: "Mapping[str, Any] | str | None", family: "Family | str | None" = None) -> bool:
    """Whether option `values` select an official global-stream policy (of `family`, else of any family
    that declares the option: a family without the option never receives its value). A bare policy
    name (the former signature) counts for every option that lists it."""
    if values is None:
        return False
    if isinstance(values, str):
        return any(values in o.global_stream for _, f in FAMILIES.items() for o in f.options)
    if family is not None:
        return (get_family(family) if isinstance(family, str) else family).uses_global_stream(values)
    return any(f.uses_global_stream(values) for _, f in FAMILIES.items())


def start_global_stream(values: "Mapping[str, Any] | str", seed: int, cfg: object = None) -> None:
    """Seed the global RNG for a global-stream policy: ``torch.manual_seed(seed)``, then the
    ``stream_start`` of the family whose config `cfg` is (ALIT ``official`` skips the official model
    construction's draws). A bare policy name is read as ``{option: name}`` for every option listing it."""
    import torch

    torch.manual_seed(seed)
    if isinstance(values, str):
        values = {o.name: values for _, f in FAMILIES.items() for o in f.options if values in o.global_stream}
    for _, fam in FAMILIES.items():
        if fam.stream_start and cfg is not None and isinstance(cfg, fam.config_cls()):
            resolve_target(fam.stream_start)(values, seed, cfg)
            return


def run_identity(values: Mapping[str, Any], family: "Family | None") -> dict[str, Any]:
    """The ``config.json`` entries of the inference options (the run identity).

    Options declared ``top_level`` (``halting``) are top-level keys for every run, None where the
    family lacks them (so the run ids of earlier runs stay the same); every other option that
    changes the numbers goes under ``options`` (absent when there is none).
    """
    out: dict[str, Any] = dict.fromkeys(top_level_names())
    rest = {}
    for o in (family.options if family is not None else ()):
        value = values.get(o.name)
        if o.top_level:
            out[o.name] = value
        elif o.changes_numbers and value is not None:
            rest[o.name] = value
    if rest:
        out["options"] = rest
    return out
