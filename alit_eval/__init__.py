"""alit-eval: analysis and evaluation toolkit for adaptive-length image tokenizers.

Kept import-light on purpose: `alit-eval --help` must not import torch. The Python API
(`alit_eval.api`) is imported on first use::

    from alit_eval import evaluate, fid_between, load_tokenizer

    res = evaluate("demo", "demo-scenes", budgets=[8, 64], limit=16)
    print(res.table)
"""

from typing import Any

from alit_eval.version import __version__

_API = ("evaluate", "fid_between", "load_tokenizer", "Evaluation")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """Lazy access to the API functions, so ``import alit_eval`` does not import torch."""
    if name in _API:
        from alit_eval import api

        return getattr(api, name)
    raise AttributeError(f"module 'alit_eval' has no attribute {name!r}")
