"""Token-budget syntax: lists, compact ranges and continued progressions, checked against a tokenizer.

Grammar (comma-separated parts, spaces ignored):

- ``32,64,128,256``: explicit budgets.
- ``8-256:8``: the inclusive range 8, 16, ..., 256 (``a-b`` alone steps by 1).
- ``1,2,4,...`` and ``32,64,...,256``: a progression continued from the terms before ``...``, up to
  the value after it, or without one up to the tokenizer's largest budget. Two terms continue
  arithmetically (the usual reading of ``1, 2, ..., n``); three or more continue with their
  constant difference, or else their constant whole-number ratio (``1,2,4,...`` doubles).
- ``all``: every budget the tokenizer can produce.

`parse_budget_spec` checks the syntax alone (before any model is loaded); `BudgetSpec.resolve`
expands it against a `BudgetSpace` (what a tokenizer can produce: a discrete list such as ALIT's
32..256 step 32, or a range 1..K for prefix families) and raises one line naming the valid range.
Every number is checked against `MAX_BUDGET` before a range or progression is expanded, so a string
such as ``1-1000000000`` is one line, not gigabytes of list. Stdlib only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Sequence

from alit_eval.errors import AlitEvalError

ELLIPSIS = "..."
# The largest budget the syntax accepts. No tokenizer alit-eval knows produces more than 512 tokens
# (KARL); 65536 is a 256 x 256 token grid, so real budgets fit with room to spare, while a typo such
# as 1-1000000000 is refused before it is expanded (it once filled 3 GB before any model loaded).
MAX_BUDGET = 1 << 16
MAX_TEXT = 10_000  # characters of a budget string (an explicit list of every budget up to 2000 fits)
_RANGE = re.compile(r"^([0-9]+)-([0-9]+)(?::([0-9]+))?$")  # ASCII digits only


class BudgetSyntaxError(AlitEvalError, ValueError):
    """A budget string that cannot be read, or budgets a tokenizer cannot produce."""


@dataclass(frozen=True)
class BudgetSpace:
    """The token budgets one tokenizer can produce (sorted, distinct, positive)."""

    values: tuple[int, ...]

    @classmethod
    def of(cls, budgets: Iterable[int]) -> "BudgetSpace":
        """The space of a tokenizer's ``budgets`` attribute (any iterable of ints)."""
        values = tuple(sorted({int(b) for b in budgets}))
        if not values or values[0] < 1:
            raise ValueError(f"a budget space needs positive budgets, got {values[:5]}")
        return cls(values)

    @property
    def max(self) -> int:
        return self.values[-1]

    @property
    def is_range(self) -> bool:
        """True when every whole number from the smallest to the largest budget is producible."""
        return len(self.values) == self.values[-1] - self.values[0] + 1

    def describe(self) -> str:
        """``1..256`` for a range, ``32, 64, ..., 256`` for an even step, else the list."""
        v = self.values
        if len(v) == 1:
            return str(v[0])
        if self.is_range:
            return f"{v[0]}..{v[-1]}"
        steps = {b - a for a, b in zip(v, v[1:])}
        if len(steps) == 1 and len(v) > 3:
            return f"{v[0]}, {v[1]}, ..., {v[-1]}"
        return ", ".join(map(str, v))

    def __contains__(self, budget: object) -> bool:
        return budget in self._members

    @cached_property
    def _members(self) -> frozenset[int]:  # built once: membership is asked for every requested budget
        return frozenset(self.values)


@dataclass(frozen=True)
class BudgetSpec:
    """A parsed budget string: explicit values plus progressions that may run to the tokenizer's max."""

    text: str
    values: tuple[int, ...]
    open_ends: tuple[tuple[tuple[int, ...], str], ...] = ()  # (leading terms, "arith" | "geom")
    everything: bool = False

    def resolve(self, space: BudgetSpace | Sequence[int], *, option: str = "--budgets") -> list[int]:
        """Expand against what a tokenizer produces; sorted distinct budgets.

        Raises:
            BudgetSyntaxError: a budget outside `space`, one line naming the valid budgets.
        """
        space = space if isinstance(space, BudgetSpace) else BudgetSpace.of(space)
        if self.everything:
            return list(space.values)
        out = set(self.values)
        for terms, kind in self.open_ends:
            out.update(_continue(terms, kind, space.max))
        return check_budgets_in(out, space, option=f"{option} {_shown(self.text)}")

    def fixed(self, *, option: str = "--budgets") -> list[int]:
        """The budgets without a tokenizer (the string must not need one: no ``all``, no open ``...``)."""
        if self.everything or self.open_ends:
            raise BudgetSyntaxError(
                f"{option} {_shown(self.text)} continues up to the tokenizer's largest budget; "
                "give the end (e.g. 1,2,4,...,256)"
            )
        return sorted(set(self.values))


def check_budgets_in(budgets: Iterable[int], space: BudgetSpace | Sequence[int], *,
                     option: str = "--budgets") -> list[int]:
    """Sorted distinct `budgets`, or one line naming those outside `space` and what it holds."""
    space = space if isinstance(space, BudgetSpace) else BudgetSpace.of(space)
    out = sorted({int(b) for b in budgets})
    members = space._members
    bad = [b for b in out if b not in members]
    if bad or not out:
        shown = ", ".join(map(str, bad[:5])) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        raise BudgetSyntaxError(
            f"{option}: budget(s) {shown or 'none'} not available; this tokenizer produces {space.describe()}"
        )
    return out


def _continue(terms: Sequence[int], kind: str, stop: int) -> list[int]:
    """The progression through `terms`, continued while it stays <= `stop` (the terms themselves kept)."""
    out = list(terms)
    step = terms[-1] - terms[-2]
    ratio = terms[-1] // terms[-2] if kind == "geom" else 0
    nxt = terms[-1] + step if kind == "arith" else terms[-1] * ratio
    while nxt <= stop:
        out.append(nxt)
        nxt = nxt + step if kind == "arith" else nxt * ratio
    return out


def _kind(terms: Sequence[int], text: str, option: str) -> str:
    if len(terms) < 2:
        raise BudgetSyntaxError(f"{option} {_shown(text)}: '...' needs at least two terms before it (e.g. 32,64,...)")
    diffs = {b - a for a, b in zip(terms, terms[1:])}
    if len(diffs) == 1 and min(diffs) > 0:
        return "arith"
    if all(b % a == 0 for a, b in zip(terms, terms[1:])):
        ratios = {b // a for a, b in zip(terms, terms[1:])}
        if len(ratios) == 1 and min(ratios) > 1:
            return "geom"
    raise BudgetSyntaxError(
        f"{option} {_shown(text)}: {', '.join(map(str, terms))} is neither an increasing arithmetic nor a "
        "whole-number geometric progression, so '...' cannot continue it"
    )


def _number(item: str, text: str, option: str) -> int:
    # isdigit() also accepts other scripts' digits and superscripts; only ASCII 0-9 is a budget.
    if not (item.isascii() and item.isdigit()) or int(item) < 1:
        raise BudgetSyntaxError(
            f"{option} {_shown(text)}: {_shown(item, 30)} is not a positive whole number "
            "(forms: 32,64,128  8-256:8  1,2,4,...)"
        )
    return _bounded(item, text, option)


def _shown(text: str, limit: int = 60) -> str:
    """`text` quoted for a message, cut to `limit` characters (the budget string is echoed in every error)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def _bounded(digits: str, text: str, option: str) -> int:
    """`digits` as an int, or one line when it exceeds `MAX_BUDGET` (checked before any expansion)."""
    # Compare lengths first: int() of a 5000-digit string raises Python's own digit-limit error.
    if len(digits.lstrip("0")) > len(str(MAX_BUDGET)) or int(digits) > MAX_BUDGET:
        shown = digits if len(digits) <= 20 else f"{digits[:12]}... ({len(digits)} digits)"
        raise BudgetSyntaxError(
            f"{option} {_shown(text)}: budget {shown} is above {MAX_BUDGET}, more tokens than any tokenizer "
            "produces; give budgets within the tokenizer's range (alit-eval models lists them)"
        )
    return int(digits)


def parse_budget_spec(text: str, *, option: str = "--budgets") -> BudgetSpec:
    """Read a budget string (see the module docstring for the forms); syntax errors are one line.

    Raises:
        BudgetSyntaxError: empty parts, non-numbers, bad ranges, or a ``...`` without a progression.
    """
    raw = str(text)
    if len(raw) > MAX_TEXT:  # a budget list is short; a megabyte of text is a mistake, not a sweep
        raise BudgetSyntaxError(f"{option}: {len(raw)} characters is too long for a budget list "
                                f"(at most {MAX_TEXT}; use ranges such as 8-256:8)")
    items = [p.strip() for p in raw.replace(" ", "").split(",")]
    if not raw.strip() or any(not p for p in items):
        raise BudgetSyntaxError(f"{option} {_shown(raw)}: give budgets such as 32,64,128 or 8-256:8 or 1,2,4,...")
    if items == ["all"]:
        return BudgetSpec(raw, (), everything=True)
    values: list[int] = []
    open_ends: list[tuple[tuple[int, ...], str]] = []
    run: list[int] = []  # the plain numbers since the last range or '...'
    i = 0
    while i < len(items):
        item = items[i]
        if item == ELLIPSIS:
            kind = _kind(run, raw, option)
            end = items[i + 1] if i + 1 < len(items) else None
            if end is None:
                open_ends.append((tuple(run), kind))
            else:
                stop = _number(end, raw, option)
                if stop < run[-1]:
                    raise BudgetSyntaxError(f"{option} {_shown(raw)}: the end {stop} after '...' is below {run[-1]}")
                seq = _continue(run, kind, stop)
                if seq[-1] != stop:
                    raise BudgetSyntaxError(
                        f"{option} {_shown(raw)}: the end {stop} is not a term of {', '.join(map(str, run))}, ... "
                        f"(it reaches {seq[-1]}); end on a term or drop the end to run to the tokenizer's largest budget"
                    )
                values.extend(seq)
                i += 1
            run = []
        elif m := _RANGE.match(item):
            lo, hi = _bounded(m.group(1), raw, option), _bounded(m.group(2), raw, option)
            step = _bounded(m.group(3) or "1", raw, option)
            if lo < 1 or hi < lo or step < 1:
                raise BudgetSyntaxError(
                    f"{option} {_shown(raw)}: range {_shown(item, 30)} must be a-b[:step] "
                    "with 1 <= a <= b and step >= 1"
                )
            values.extend(range(lo, hi + 1, step))
            run = []
        else:
            number = _number(item, raw, option)
            values.append(number)
            run.append(number)
        i += 1
    return BudgetSpec(raw, tuple(values), tuple(open_ends))


def parse_budgets(text: str, space: BudgetSpace | Sequence[int] | None = None, *, option: str = "--budgets") -> list[int]:
    """Parse `text` and, with a `space`, expand and check it; sorted distinct budgets.

    Without a space the string must be self-contained (no ``all``, no open ``...``).
    """
    spec = parse_budget_spec(text, option=option)
    return spec.fixed(option=option) if space is None else spec.resolve(space, option=option)
