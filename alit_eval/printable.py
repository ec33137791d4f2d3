"""Names made safe to print: control and invisible format characters escaped.

A file name is chosen by whoever made the dataset, and it may hold terminal escape codes (which can
clear the screen or print coloured text that looks like alit-eval's) or a newline (which forges a
console line such as ``error: ...``). Every name that reaches the console, a log, or a report goes
through `printable`, which writes such characters as Python escapes (``\\x1b``, ``\\n``) and leaves
ordinary text, including non-ASCII letters, as it is.

`EscapingFormatter` does the same for whole log records, so a name that reaches a log message
without passing through `printable` still cannot write control codes to the terminal.
Stdlib only.
"""

from __future__ import annotations

import logging
import re
from typing import Any

# C0 and C1 control characters (newline and tab included: a name never needs them), DEL, and the
# invisible format characters that reorder or hide text (zero-width, bidi overrides and isolates, BOM).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
# The same without newline and tab, for whole messages whose own line breaks are meant.
CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    return match.group(0).encode("unicode_escape").decode("ascii")


def printable(value: Any) -> str:
    """`value` as text for one line: control and format characters escaped (``\\x1b[2J`` -> ``\\\\x1b[2J``).

    Args:
        value: a file name, path or any object (``str()`` is taken).

    Returns:
        The text, unchanged when it holds no such character.
    """
    text = value if isinstance(value, str) else str(value)
    return CONTROL.sub(_escape, text)


def printable_text(text: str) -> str:
    """Like `printable` but keeps newlines and tabs (a message that is several lines on purpose)."""
    return CONTROL_IN_TEXT.sub(_escape, text)


class EscapingFormatter(logging.Formatter):
    """A log formatter whose output never carries terminal control codes (newlines in a message are
    escaped too, so one record stays one line; a traceback appended by ``exc_info`` keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return printable(super().formatMessage(record))
