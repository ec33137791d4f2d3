"""What a loaded tokenizer's family says about running it: its family, option values, rollout
keywords, budgets, attention mode, tokens used and bits per token.

The engine and the analyses ask these questions of any tokenizer without naming its family; a
tokenizer of no registered family (a test double, a wrapper) gets the neutral answer
(`family_or_none`). Imports no torch at import time.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from alit_eval.errors import AlitEvalError
from alit_eval.tokenizers.families import FAMILIES, Family, get_family


def family_of(tokenizer: Any) -> Family:
    """The family of a loaded tokenizer: its ``family`` attribute (set by `load_any`), else its type.

    Raises:
        AlitEvalError: a tokenizer of no registered family.
    """
    name = getattr(tokenizer, "family", None)
    if isinstance(name, str) and name in FAMILIES:
        return FAMILIES.get(name)
    refined = getattr(getattr(tokenizer, "cfg", None), "family", None)
    if isinstance(refined, str) and refined in FAMILIES:
        return FAMILIES.get(refined)
    for _, entry in FAMILIES.items():
        if entry.detect_as is None and isinstance(tokenizer, entry.tokenizer_cls()):
            return entry
    raise AlitEvalError(
        f"{type(tokenizer).__name__} belongs to no registered tokenizer family ({', '.join(FAMILIES.names())})"
    )


def family_or_none(tokenizer: Any) -> Family | None:
    """`family_of`, or None for a tokenizer of no registered family (a test double, a wrapper)."""
    try:
        return family_of(tokenizer)
    except AlitEvalError:
        return None


def option_values(tokenizer: Any) -> dict[str, Any]:
    """The inference options a loaded tokenizer runs with (its attributes named after its family's
    declared options; empty for a tokenizer of no registered family)."""
    fam = family_or_none(tokenizer)
    return {o.name: getattr(tokenizer, o.name, o.default) for o in fam.options} if fam else {}


def inference_kwargs(tokenizer: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `values` (None dropped) that `tokenizer.rollout` takes as keywords.

    How the engine passes the declared inference options and ``generator`` to any tokenizer without
    naming its family: a family that has no such option simply does not receive it (the loader
    already refused an option given explicitly for the wrong family).
    """
    params = inspect.signature(tokenizer.rollout).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {k: v for k, v in values.items() if v is not None}
    return {k: v for k, v in values.items() if v is not None and k in params}


def budgets_for(tokenizer: Any, given: str | list[int] | None = None, default: str | None = None,
                *, option: str = "--budgets") -> list[int]:
    """The budgets a sweep evaluates: explicit > `default` (a pretrained entry's) > the family's default
    > the tokenizer's ``default_budgets`` > all its budgets; checked against what it can produce.

    Args:
        tokenizer: a loaded tokenizer (its ``budgets`` say what it can produce).
        given: ``--budgets`` as text in the budget syntax (`alit_eval.budgets`) or a list of ints.
        default: a pretrained entry's default budgets (budget syntax), or None.

    Raises:
        AlitEvalError: a budget the tokenizer cannot produce (one line naming its range), bad syntax.
    """
    from alit_eval.budgets import BudgetSpace, check_budgets_in, parse_budget_spec

    space = BudgetSpace.of(tokenizer.budgets)
    if given is not None and not isinstance(given, str):  # already expanded by the CLI
        return check_budgets_in(given, space, option=option)
    fam = family_or_none(tokenizer)
    fam_default = fam.default_budgets if fam else None
    text = given or default or fam_default
    if text:
        out = parse_budget_spec(text, option=option).resolve(space, option=option)
        if text is fam_default and text != default and space.max not in out:
            out.append(space.max)  # the family's progression always ends at the full length
        return sorted(out)
    return sorted(getattr(tokenizer, "default_budgets", None) or space.values)


def tokens_used(out: Any) -> Any:
    """Per-image tokens a budget's output really used (``[B]`` int64): the slots the model kept
    (``extras["num_active"]``, e.g. KARL's halting) where it reports them, else the budget itself."""
    import torch

    active = out.extras.get("num_active") if getattr(out, "extras", None) else None
    if active is not None:
        return active.to(torch.int64)
    return torch.full((len(out.tokens),), int(out.budget), dtype=torch.int64)


def attention_for(tokenizer: Any, requested: bool | str | None) -> bool | str:
    """The ``rollout(attention=...)`` value for `tokenizer` (`Family.attention_arg`; as given when the
    tokenizer belongs to no registered family)."""
    fam = family_or_none(tokenizer)
    if fam is None:
        return requested if requested is not None else False
    return fam.attention_arg(requested)


def bits_from_record(family: str, config: Mapping[str, Any]) -> float | None:
    """Bits per token of a recorded tokenizer (meta.json ``checkpoint``: family name + config dict);
    None when its tokens have no code rate (continuous)."""
    fam = get_family(family)
    return fam.bits(fam.config_cls().from_dict(config))
