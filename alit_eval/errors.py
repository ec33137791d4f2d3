"""User-facing error type: one clear line that says what went wrong and what to do.

Library code raises `AlitEvalError` (or a subclass) for bad input; the CLI prints its message
without a traceback and exits non-zero. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

from typing import Any

MAX_MESSAGE = 2000  # characters of one error line; the rest is elided, not printed


def one_line(exc: BaseException, limit: int = MAX_MESSAGE) -> str:
    """The message of `exc` as one printable line: newlines joined, control characters escaped, cut at `limit`."""
    text = " ".join(str(exc).split("\n")).strip() or type(exc).__name__
    if len(text) > limit:
        text = f"{text[: limit - 200]} ... ({len(text) - limit + 200} characters omitted) ... {text[-200:]}"
    # Terminal control codes (a file name's ESC sequences can clear the screen or fake output) and
    # invisible format characters are escaped (`alit_eval.printable`).
    from alit_eval.printable import printable

    return printable(text)


class AlitEvalError(Exception):
    """An error caused by the user's input or environment, with an actionable message."""


class CheckpointError(AlitEvalError):
    """A checkpoint could not be read, is unsafe to read, or does not match the model."""


class ConfigError(CheckpointError, ValueError):
    """A model config value (from a file, its ``args`` or inferred from its tensors) is invalid.

    Also a `ValueError`, so code that builds configs by hand keeps catching the usual type.
    """


class DataError(AlitEvalError):
    """A dataset is empty, unreadable or malformed."""


class OfflineError(AlitEvalError):
    """Something had to be downloaded but the network is unavailable or disabled."""


class RunFinished(Exception):
    """The run folder already holds this finished run, so nothing is recomputed (not an error).

    Raised on entering `alit_eval.analysis.skeleton.CommandRun` when the caller asked for it
    (``reuse_finished=True``, as the CLI does); the CLI then prints the stored table and summary.
    Defined here, beside the error types, so the CLI catches it by type without importing analysis.

    Attributes:
        path: the run folder.
        meta: its meta.json.
    """

    def __init__(self, path: Any, meta: dict[str, Any]) -> None:
        super().__init__(f"{path} holds this finished run")
        self.path, self.meta = path, meta

    def summary(self) -> list[str]:
        """The summary recorded when the run finished."""
        return run_summary(self.meta)


def run_summary(meta: dict[str, Any] | None) -> list[str]:
    """The console summary a finished run recorded in its meta.json (``extra.summary``; [] if none)."""
    extra = (meta or {}).get("extra")
    return [str(line) for line in (extra.get("summary") or [])] if isinstance(extra, dict) else []
