"""GPU fast path of the sweep: precision, torch.compile, channels-last Inception, OOM back-off.

Reported numbers default to fp32. ``bf16`` (autocast) and ``tf32`` (TensorFloat-32 matmuls on
CUDA) are faster and labelled approximate in meta.json: bf16 moves FID by about 0.3%
(offline_metrics.md §7). On out-of-memory a batch is split in halves and retried, so no image is
lost, and later batches are processed in chunks of the size that fitted.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Iterator

import numpy as np
import torch

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "tf32")
AUTO_BATCH = {"cuda": 64, "cpu": 16}


def auto_batch_size(requested: int, device: torch.device) -> int:
    """``0`` means auto: a device-dependent start value that OOM back-off refines."""
    return requested if requested > 0 else AUTO_BATCH.get(device.type, 16)


@contextlib.contextmanager
def precision(mode: str, device: torch.device) -> Iterator[None]:
    """Numerics for the model and Inception forward passes of one batch."""
    if mode not in PRECISIONS:
        raise ValueError(f"unknown precision {mode!r}; valid: {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        tf32 = mode == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    try:
        if mode == "bf16":
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def compile_model(tokenizer: Any) -> Any:
    """torch.compile the transformer stacks (the recurrence's hot loop); returns the tokenizer."""
    if hasattr(tokenizer, "encoder") and hasattr(tokenizer, "decoder"):
        tokenizer.encoder = torch.compile(tokenizer.encoder, dynamic=True)
        blocks = tokenizer.decoder.transformer
        for i in range(len(blocks)):
            blocks[i] = torch.compile(blocks[i], dynamic=True)
    return tokenizer


def channels_last(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Channels-last memory format for convolutional networks on CUDA (faster cuDNN kernels)."""
    return module.to(memory_format=torch.channels_last) if device.type == "cuda" else module


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def split_batch(batch: dict[str, Any], size: int) -> list[dict[str, Any]]:
    """Cut a collated batch into parts of at most `size` decoded images (failures go with the first)."""
    n = len(batch["ids"])
    parts = []
    for start in range(0, max(n, 1), size):
        sl = slice(start, start + size)
        parts.append({
            "images": batch["images"][sl], "ids": batch["ids"][sl], "indices": batch["indices"][sl],
            "labels": batch["labels"][sl], "failed": batch["failed"] if start == 0 else [],
            "positions": list(batch["indices"][sl]) + ([p for p in batch["positions"] if p not in set(batch["indices"])]
                                                      if start == 0 else []),
        })
    return parts


def merge_arrays(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate the shard arrays of sub-batches (per-image arrays along axis 0)."""
    if len(parts) == 1:
        return parts[0]
    out: dict[str, np.ndarray] = {}
    for key in dict.fromkeys(k for p in parts for k in p):
        have = [p[key] for p in parts if key in p]
        out[key] = have[-1] if key == "rng_state" else np.concatenate(have)
    return out


class BackoffProcessor:
    """Run a batch function, halving the chunk size on CUDA out-of-memory until it fits."""

    def __init__(self, fn: Callable[[dict[str, Any]], dict[str, np.ndarray]], limit: int | None = None) -> None:
        self.fn = fn
        self.limit = limit  # largest chunk known to fit

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        n = len(batch["ids"])
        size = min(self.limit or n, n) or 1
        while True:
            try:
                return merge_arrays([self.fn(part) for part in split_batch(batch, size)])
            except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not is_oom(exc) or size <= 1:
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                size = max(1, size // 2)
                self.limit = size
                log.warning("out of memory: retrying this batch in chunks of %d images", size)
