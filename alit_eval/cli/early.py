"""Checks of a sweep command's inputs that need no heavy import, run before torch is loaded.

A typo in a path or a budget should fail at once, not after the minute it takes to import torch and
load a model: ``--data`` must exist (unless it is a glob or a demo split), a ``--ckpt`` that is
clearly a file (a path or a checkpoint suffix) must exist, and ``--budgets`` is checked against
the budgets an alit-eval ALIT ``.safetensors`` file declares in its header (the bundled demo
tokenizer included). Everything else is checked later, where the model is loaded, as before.
Stdlib only (plus `alit_eval.budgets`, itself stdlib only).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from alit_eval.errors import AlitEvalError, CheckpointError, DataError

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
GLOB_CHARS = "*?["
HEADER_LIMIT = 1 << 24  # a safetensors JSON header larger than 16 MiB is not read here


def check_data(data: Any) -> None:
    """``--data``: an existing path, a glob or a demo split; else one line saying what it expects."""
    if data is None:
        return
    text = str(data)
    if text.startswith("demo-") or any(ch in text for ch in GLOB_CHARS) or Path(text).exists():
        return
    raise DataError(f"--data {text}: no such file or folder (expected a folder, a .txt/.csv list, an image, a glob "
                    "or a demo split such as demo-scenes)")


def looks_like_file(text: str) -> bool:
    """A ``--ckpt`` value that names a file rather than a pretrained name."""
    return "/" in text or "\\" in text or text.lower().endswith(CHECKPOINT_SUFFIXES)


def check_ckpt(ckpt: Any) -> Path | None:
    """``--ckpt``: a file that does not exist fails here; returns the file when it exists (else None)."""
    if ckpt is None:
        return None
    text = str(ckpt)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.exists() or not looks_like_file(text):
        return None  # a folder or a pretrained name: resolved (and refused) where the model is loaded
    raise CheckpointError(f"--ckpt {text}: no such file (pass a checkpoint file, or a pretrained name from "
                          "`alit-eval models`)")


def header_budgets(path: Path) -> list[int] | None:
    """The budgets an alit-eval ALIT ``.safetensors`` declares (its config's tokens per iteration x
    iterations), read from the JSON header only; None for any other file."""
    if path.suffix.lower() != ".safetensors":
        return None
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > HEADER_LIMIT:
                return None
            meta = json.loads(f.read(n)).get("__metadata__") or {}
        if not str(meta.get("format", "")).startswith("alit-eval/alit-tokenizer/"):
            return None
        cfg = json.loads(meta["config"])
        per, iters = int(cfg["tokens_per_iter"]), int(cfg["iterations"])
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None  # anything unusual: the full load checks it
    return [per * k for k in range(1, iters + 1)] if per > 0 and 0 < iters <= 4096 else None


def bundled(ckpt: str) -> Path | None:
    """The file of a bundled pretrained name (``demo``), found without importing the registry."""
    if ckpt != "demo":
        return None
    path = Path(__file__).resolve().parents[1] / "assets" / "demo_tokenizer.safetensors"
    return path if path.is_file() else None


def check_budgets(ckpt: Any, budgets: Any) -> None:
    """``--budgets`` against the checkpoint's header, where it can be read cheaply (see `header_budgets`)."""
    if ckpt is None or budgets is None:
        return
    path = check_ckpt(ckpt) or bundled(str(ckpt))
    space = header_budgets(path) if path is not None else None
    if space is None:
        return
    from alit_eval.budgets import check_budgets_in, parse_budget_spec

    # raises one line naming what the tokenizer produces
    if isinstance(budgets, str):
        parse_budget_spec(budgets).resolve(space)
    else:
        check_budgets_in(list(budgets), space)


def check_sweep_inputs(config: Any, *, from_run: Any = None) -> None:
    """All of the above for one sweep command's config (``--data`` is not read with ``--from-run``).

    Raises:
        AlitEvalError: one line naming the option and what it expects.
    """
    if from_run is None:
        check_data(getattr(config, "data", None))
    check_ckpt(getattr(config, "ckpt", None))
    check_budgets(getattr(config, "ckpt", None), getattr(config, "budgets", None))


def check_ckpt_count(ckpts: Any, minimum: int = 2) -> None:
    """`compare`'s ``--ckpt`` count, before anything is imported."""
    if len(list(ckpts or [])) < minimum:
        raise AlitEvalError("compare needs at least two tokenizers; pass --ckpt twice or more")
