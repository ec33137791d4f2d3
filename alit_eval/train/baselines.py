"""Trivial reconstruction baselines the demo tokenizer is compared against (uint8 in, uint8 out).

- ``mean_colour``: every pixel set to the image's per-channel mean colour;
- ``median_colour``: the same with the per-channel median (what a collapsed, one-colour tokenizer gives);
- ``patch_mean``: each ``patch x patch`` block set to its mean colour (8 px = the 8x8 token grid).
"""

from __future__ import annotations

import numpy as np


def _l1(recon: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-image mean |recon - ref| / 255 for uint8 ``[B, H, W, 3]`` arrays -> ``[B]`` float64."""
    return np.abs(recon.astype(np.float64) - ref.astype(np.float64)).reshape(len(ref), -1).mean(1) / 255.0


def _round_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def mean_colour(images: np.ndarray) -> np.ndarray:
    """``[B, H, W, 3]`` uint8 -> the per-image mean-colour reconstruction (uint8, same shape)."""
    mean = images.astype(np.float64).mean(axis=(1, 2), keepdims=True)
    return np.broadcast_to(_round_u8(mean), images.shape).copy()


def median_colour(images: np.ndarray) -> np.ndarray:
    """``[B, H, W, 3]`` uint8 -> the per-image median-colour reconstruction (uint8)."""
    med = np.median(images.astype(np.float64), axis=(1, 2), keepdims=True)
    return np.broadcast_to(_round_u8(med), images.shape).copy()


def patch_mean(images: np.ndarray, patch: int = 8) -> np.ndarray:
    """``[B, H, W, 3]`` uint8 -> each ``patch x patch`` block replaced by its mean colour (uint8)."""
    b, h, w, c = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    blocks = images.astype(np.float64).reshape(b, h // patch, patch, w // patch, patch, c)
    mean = blocks.mean(axis=(2, 4), keepdims=True)
    return _round_u8(np.broadcast_to(mean, blocks.shape).reshape(b, h, w, c))


def baseline_l1(images: np.ndarray, patch: int = 8) -> dict[str, np.ndarray]:
    """Per-image L1 ``[B]`` of every baseline on uint8 images ``[B, H, W, 3]``."""
    return {
        "mean_colour": _l1(mean_colour(images), images),
        "median_colour": _l1(median_colour(images), images),
        f"patch_mean_{patch}px": _l1(patch_mean(images, patch), images),
    }
