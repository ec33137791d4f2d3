"""The one place a ``--device`` value (``auto``, ``cpu``, ``cuda``, ``cuda:N``) becomes a torch device."""

from __future__ import annotations

import torch

from alit_eval.errors import AlitEvalError


def resolve_device(device: str | None) -> torch.device:
    """``auto`` (or None) is CUDA when available, else the CPU; anything else is checked against the machine.

    Raises:
        AlitEvalError: CUDA was asked for but is not available, or the index names no visible GPU.
    """
    if device in ("auto", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise AlitEvalError(f"--device {device} was requested but CUDA is not available; use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise AlitEvalError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev
