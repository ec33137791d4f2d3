"""The one registry type: named entries with lazy "module:attr" targets and "did you mean" errors.

Used for tokenizers/pretrained checkpoints, preprocess modes, halting policies and metrics, so the
CLI's choices and `alit-eval models` all read from one kind of table.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Generic, Iterator, TypeVar

from alit_eval.errors import AlitEvalError

T = TypeVar("T")


def resolve_target(target: str) -> Any:
    """Import and return the object named by a ``"package.module:attr"`` string."""
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"target {target!r} must look like 'package.module:attr'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class Registry(Generic[T]):
    """A named table of entries of one kind.

    Entries are stored as given (often a small dataclass, or a lazy ``"module:attr"`` string that
    `load` resolves on first use), so building the table never imports heavy modules.
    """

    kind: str
    _entries: dict[str, T] = field(default_factory=dict)

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def get(self, name: str) -> T:
        """Return the entry called `name`, or raise an error that suggests close names."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            valid = ", ".join(self._entries) or "(none)"
            raise AlitEvalError(f"unknown {self.kind} {name!r}.{hint} Valid: {valid}.") from None

    def load(self, name: str) -> Any:
        """Return the entry, importing it first when it is a lazy ``"module:attr"`` string."""
        entry = self.get(name)
        return resolve_target(entry) if isinstance(entry, str) else entry
