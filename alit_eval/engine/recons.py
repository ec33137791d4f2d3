"""``--save-recons DIR``: every reconstruction the sweep measured, as a lossless PNG per budget.

Written from inside the sweep's batch loop (`alit_eval.engine.sweep`), from the very uint8 tensors
the metrics and Inception features are computed on (same rounding, or the official truncation with
``--official-truncation``), so another FID tool run on these folders sees exactly what alit-eval saw:

    DIR/original/<image_id>.png     the preprocessed original (S x S, uint8)
    DIR/<budget>/<image_id>.png     its reconstruction at that budget

An image id that is a relative path (``cat/001.jpg``) keeps its subfolders (``cat/001.jpg.png``);
leading ``/`` and ``..`` parts are dropped so nothing is written outside DIR.
"""

from __future__ import annotations

import io
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np

from alit_eval.results.atomic import write_bytes

ORIGINAL = "original"


def recon_path(root: str | Path, key: str | int, image_id: str) -> Path:
    """Where the PNG of `image_id` goes: ``root/<key>/<image_id>.png`` (``.png`` ids keep their name).

    Args:
        root: the ``--save-recons`` folder.
        key: ``"original"`` or a budget.
        image_id: the per-image table's ``image_id``.
    """
    parts = [p for p in PurePosixPath(str(image_id).replace("\\", "/")).parts if p not in ("/", "..", ".")]
    name = "/".join(parts) or "image"
    if not name.lower().endswith(".png"):
        name += ".png"
    return Path(root) / str(key) / name


def write_png(array: np.ndarray, path: Path) -> None:
    """Write a uint8 ``[3, H, W]`` image as a lossless PNG (atomically)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0))).save(buf, format="PNG")
    write_bytes(buf.getvalue(), path)


def save_batch(root: str | Path, ids: Sequence[str], originals: np.ndarray, recons: Sequence[np.ndarray],
               budgets: Sequence[int]) -> None:
    """Write one batch: the originals and each budget's reconstructions.

    Args:
        root: the ``--save-recons`` folder.
        ids: image ids, one per row.
        originals: uint8 ``[B, 3, S, S]`` preprocessed originals.
        recons: per budget, uint8 ``[B, 3, S, S]`` reconstructions (as measured).
        budgets: the budgets, in the order of `recons`.
    """
    for i, image_id in enumerate(ids):
        write_png(originals[i], recon_path(root, ORIGINAL, image_id))
        for b, rec in zip(budgets, recons):
            write_png(rec[i], recon_path(root, int(b), image_id))
