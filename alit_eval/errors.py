"""User-facing error type: one clear line that says what went wrong and what to do.

Library code raises `AlitEvalError` (or a subclass) for bad input; the CLI prints its message
without a traceback and exits non-zero. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class AlitEvalError(Exception):
    """An error caused by the user's input or environment, with an actionable message."""


class CheckpointError(AlitEvalError):
    """A checkpoint could not be read, is unsafe to read, or does not match the model."""


class DataError(AlitEvalError):
    """A dataset is empty, unreadable or malformed."""


class OfflineError(AlitEvalError):
    """Something had to be downloaded but the network is unavailable or disabled."""
