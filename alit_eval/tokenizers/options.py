"""Inference options, declared once per family: name, type, bounds, default, help, run identity.

A family's folder declares its options as a tuple of `InferenceOption` (stdlib only, so ``--help``
and ``alit-eval models`` read them without torch) and its registry line points at that tuple.
Everything else derives from the declaration: the CLI flag (``--<name>``, type and help),
`alit_eval.engine.config.SweepConfig.options`, the pretrained entries' defaults, ``meta.json``'s
``resolved_from``, ``compare``'s per-tokenizer options, the run identity (``config.json``) and
``alit-eval models``. `merged` joins the declarations of several families that share a name
(``--halting`` for ALIT and KARL) into one CLI option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from alit_eval.errors import AlitEvalError

KINDS = ("choice", "float", "int", "bool", "str")


@dataclass(frozen=True)
class InferenceOption:
    """One inference option of a family (a loader and ``rollout`` keyword, and a CLI flag).

    Attributes:
        name: keyword of the family's loader and ``rollout``; the CLI flag is ``--<name>`` (``_`` -> ``-``).
        default: the value when neither the command line nor a pretrained entry gives one.
        help: one line for ``--help`` and ``alit-eval models`` (how values map, e.g. to bins).
        choices: the accepted values of a ``choice`` option.
        kind: ``choice``, ``float``, ``int``, ``bool`` or ``str``; empty: ``choice`` when `choices`
            are given, else the type of `default`.
        low, high: inclusive bounds of a number (None: unbounded on that side); values outside are
            refused in one line, as are NaN and infinities (every number must be finite).
        changes_numbers: whether the value changes the numbers; then it is part of the run identity
            (``config.json``), else only recorded in ``meta.json``.
        top_level: recorded as a top-level key of ``config.json`` (None for families without the
            option) instead of under ``options``: only for ``halting``, whose key predates the
            declarations, so the run ids of earlier runs stay the same. New options leave it False.
        global_stream: values that select the family's official global-stream policy (one global
            RNG stream per run, as the official code draws): the engine then seeds the global RNG
            once, records the batch size, refuses several processes and resumes the RNG state.
    """

    name: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    kind: str = ""
    low: float | None = None
    high: float | None = None
    changes_numbers: bool = True
    top_level: bool = False
    global_stream: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.kind:
            kind = "choice" if self.choices else {bool: "bool", int: "int", float: "float"}.get(type(self.default), "str")
            object.__setattr__(self, "kind", kind)
        if self.kind not in KINDS:
            raise ValueError(f"inference option {self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def bounds_text(self) -> str:
        """The accepted values in words (``official | seeded | off``; ``0..1``; ``a number``)."""
        if self.kind == "choice":
            return " | ".join(self.choices)
        if self.kind in ("float", "int") and (self.low is not None or self.high is not None):
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            return f"{lo}..{hi}"
        return {"float": "a finite number", "int": "a whole number", "bool": "true | false"}.get(self.kind, "text")

    def check(self, value: Any, *, owner: str = "") -> Any:
        """`value` converted to the option's type, or one `AlitEvalError` line saying what is accepted.

        None passes ("not given"). Numbers must be finite and within ``low..high``.
        """
        if value is None:
            return None
        who = f" ({owner})" if owner else ""
        bad = f"{self.flag} {value!r}{who}"
        if self.kind == "choice":
            if value not in self.choices:
                raise AlitEvalError(f"{bad} is not known; use one of: {', '.join(self.choices)}")
            return value
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "false"):
                return str(value).lower() == "true"
            raise AlitEvalError(f"{bad} must be true or false")
        if self.kind == "str":
            return str(value)
        try:
            number = float(value) if self.kind == "float" else _whole(value)
        except (TypeError, ValueError, OverflowError):
            raise AlitEvalError(f"{bad} must be {self.bounds_text() if self.kind == 'int' else 'a number'}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise AlitEvalError(f"{bad} must be a finite number (allowed {self.bounds_text()})")
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            raise AlitEvalError(f"{bad} is out of range (allowed {self.bounds_text()})")
        return number


def _whole(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value)
    if not number.is_integer():
        raise ValueError(value)
    return int(number)


@dataclass(frozen=True)
class MergedOption:
    """The CLI view of one option name over every family that declares it (`merged`)."""

    name: str
    kind: str
    declarations: tuple[tuple[str, InferenceOption], ...]  # (family title, its declaration)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def choices(self) -> tuple[str, ...]:
        out: list[str] = []
        for _, o in self.declarations:
            out += [c for c in o.choices if c not in out]
        return tuple(out)

    def widest(self) -> InferenceOption:
        """One declaration accepting what any family accepts (the CLI's first check; each family's
        loader then checks its own declaration)."""
        first = self.declarations[0][1]
        lows = [o.low for _, o in self.declarations]
        highs = [o.high for _, o in self.declarations]
        return InferenceOption(
            self.name, None, first.help, choices=self.choices, kind=self.kind,
            low=None if None in lows else min(lows), high=None if None in highs else max(highs))  # type: ignore[type-var]

    def check(self, value: Any) -> Any:
        return self.widest().check(value)

    def help(self) -> str:
        """``--help`` text: each family's help, then where the default comes from."""
        if len(self.declarations) == 1:
            title, o = self.declarations[0]
            text = f"{title} only: {o.help} ({o.bounds_text()}; default: the checkpoint's, else {o.default!r})"
        else:
            parts = [f"{title}: {o.bounds_text()}, {o.help}" for title, o in self.declarations]
            defaults = ", ".join(f"{title} {o.default!r}" for title, o in self.declarations)
            text = "; ".join(parts) + f" (default: the checkpoint's, else {defaults})"
        return text


def merged(families: Iterable[tuple[str, Sequence[InferenceOption]]]) -> list[MergedOption]:
    """One `MergedOption` per option name, in first-declared order, from ``(family title, options)`` pairs.

    Raises:
        ValueError: two families declare one name with different kinds (a flag has one type).
    """
    by_name: dict[str, list[tuple[str, InferenceOption]]] = {}
    for title, options in families:
        for o in options:
            by_name.setdefault(o.name, []).append((title, o))
    out = []
    for name, decls in by_name.items():
        kinds = {o.kind for _, o in decls}
        if len(kinds) > 1:
            raise ValueError(f"inference option {name} is declared with different kinds: {', '.join(sorted(kinds))}")
        out.append(MergedOption(name, kinds.pop(), tuple(decls)))
    return out
