"""The second preprocessing the official One-D-Piece code uses (not the evaluation one).

The official evaluation transform (bicubic antialiased resize of the short side, then centre crop)
is the existing named mode ``resize-center-crop`` (alit_eval.data.transforms), checked bit for bit
against the fixture. ``scripts/inference_tokenizer.py`` instead resizes with torchvision's default
**bilinear** interpolation (one_d_piece_official.md §3.3); this function reproduces it so that a
named mode (e.g. ``resize-bilinear-center-crop``) can be registered if anyone needs to match that
script's outputs. It is not wired as a mode here.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from alit_eval.data.transforms import center_crop_pil


def resize_bilinear_center_crop_pil(img: Image.Image, size: int) -> torch.Tensor:
    """Bilinear antialiased resize of the short side to `size`, then centre crop.

    Args:
        img: PIL image in mode "RGB".
        size: output side S.

    Returns:
        uint8 tensor ``[3, S, S]``.
    """
    resized = TF.resize(img, [size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return center_crop_pil(resized, size)
