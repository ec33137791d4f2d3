"""Option helpers shared by the commands: the global options and parsers for list-valued options.

Stdlib + typer only at import time (``alit-eval --help`` must not import torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import typer

from alit_eval.errors import AlitEvalError
from alit_eval.paths import DEFAULT_RESULTS_DIR

T = TypeVar("T")


@dataclass
class GlobalOptions:
    """Options given before the command name (``alit-eval --device cpu fid ...``).

    Attributes:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; resolved by `resolve_device` when a
            command needs it (never at startup, so ``--help`` stays instant).
        seed: seed for every random generator the command creates.
        results_dir: root folder of results.
        offline: never use the network (also set by ``ALIT_EVAL_OFFLINE=1``/``HF_HUB_OFFLINE=1``).
        verbose: verbosity count (``-v``: more output and full tracebacks on errors).
    """

    device: str = "auto"
    seed: int = 0
    results_dir: Path = field(default_factory=lambda: DEFAULT_RESULTS_DIR)
    offline: bool = False
    verbose: int = 0

    def resolve_device(self) -> str:
        """Return the concrete device: ``auto`` becomes ``cuda`` when CUDA is available, else ``cpu``.

        Raises:
            AlitEvalError: CUDA was asked for but is not available.
        """
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise AlitEvalError(f"--device {self.device} was asked for but CUDA is not available; use --device cpu")
            index = int(self.device.partition(":")[2] or 0)
            if index >= torch.cuda.device_count():
                raise AlitEvalError(
                    f"--device {self.device}: only {torch.cuda.device_count()} CUDA device(s) are visible"
                )
        return self.device


def get_globals(ctx: typer.Context) -> GlobalOptions:
    """The `GlobalOptions` stored by the app callback (defaults when a command runs on its own)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def parse_device(text: str) -> str:
    """Validate a ``--device`` value: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    value = text.strip().lower()
    if value in {"auto", "cpu", "cuda"}:
        return value
    head, _, index = value.partition(":")
    if head == "cuda" and index.isdigit():
        return f"cuda:{int(index)}"
    raise typer.BadParameter(f"{text!r} is not a device; use auto, cpu, cuda or cuda:N")


def parse_list(text: str, convert: Callable[[str], T], *, option: str, what: str) -> list[T]:
    """Parse a comma-separated option value such as ``"32,64,128"``.

    Args:
        text: the raw option value; spaces around items are ignored.
        convert: turns one item into a value; raises ValueError for a bad item.
        option: the option's name, for the error message (e.g. ``--budgets``).
        what: what one item is, for the error message (e.g. ``a whole number``).

    Raises:
        AlitEvalError: empty list, empty item or an item `convert` rejects.
    """
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise AlitEvalError(f"{option} {text!r}: give a comma-separated list such as 32,64,128")
    out = []
    for item in items:
        try:
            out.append(convert(item))
        except ValueError:
            raise AlitEvalError(f"{option} {text!r}: {item!r} is not {what}") from None
    return out


def parse_budgets(text: str, *, option: str = "--budgets") -> list[int]:
    """Parse token budgets like ``"32,64,128"`` into a sorted list of distinct positive ints.

    Whether the tokenizer can produce each budget is checked later, against the loaded model.

    Raises:
        AlitEvalError: not a list of positive whole numbers.
    """

    def positive_int(item: str) -> int:
        value = int(item)
        if value <= 0:
            raise ValueError(item)
        return value

    return sorted(set(parse_list(text, positive_int, option=option, what="a positive whole number")))


def parse_floats(text: str, *, option: str) -> list[float]:
    """Parse a comma-separated list of numbers like ``"0.05,0.07"`` (order kept)."""
    return parse_list(text, float, option=option, what="a number")


PREPROCESS_HELP = (
    "How images become S x S, where S is the tokenizer's input size read from the checkpoint: "
    "resize-center-crop (bicubic resize of the short side to S, then centre crop) or center-crop "
    "(official ALIT evaluation: centre crop at native resolution; an image with a side shorter than S "
    "is zero-padded with black there, and the run warns with the count of padded images)."
)

# Shared option declarations, so every command spells these the same way. Each call returns a
# fresh Typer OptionInfo: ``run_id: Optional[str] = run_id_option()``.


def budgets_option(default: str = "32,64,128,256") -> Any:
    """``--budgets``: comma-separated token budgets (parse the value with `parse_budgets`)."""
    return typer.Option(default, "--budgets", help="Comma-separated token budgets, e.g. 32,64,128,256.")


def run_id_option() -> Any:
    """``--run-id``: the run folder's name (default: a hash of the config, so a rerun resumes)."""
    return typer.Option(
        None, "--run-id", help="Folder name under `results/<command>/` (default: a hash of the config, so reruns resume).",
    )


def overwrite_option() -> Any:
    """``--overwrite``: replace a run folder that holds a different config."""
    return typer.Option(False, "--overwrite", help="Replace an existing run folder that holds a different config.")


def workers_option() -> Any:
    """``--workers``: DataLoader worker processes."""
    return typer.Option(0, "--workers", min=0, help="DataLoader worker processes.")


def heads_option() -> Any:
    """``--heads``: attention heads of a checkpoint whose head count cannot be inferred."""
    return typer.Option(None, "--heads", min=1, help="Attention heads, if not inferable.")


def trust_checkpoint_option() -> Any:
    """``--trust-checkpoint``: allow full unpickling of a checkpoint."""
    return typer.Option(False, "--trust-checkpoint", help="Allow full unpickling, which can run code from the file. Only for files you trust.")


def subset_seed_option() -> Any:
    """``--subset-seed``: draw a random subset of ``--limit`` images."""
    return typer.Option(None, "--subset-seed", help="Random subset of --limit images.")
