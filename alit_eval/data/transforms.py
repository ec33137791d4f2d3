"""Named preprocess modes: a decoded RGB PIL image -> a uint8 tensor [3, S, S].

Every number the toolkit writes records the mode that produced it (see `describe`). The modes:

- ``center-crop``: the official ALIT evaluation (``evaluate_rfid.py``): torchvision ``CenterCrop(S)``
  with no resize. Larger images give a native-resolution central crop; a side shorter than S is
  zero-padded exactly as torchvision pads it.
- ``resize-center-crop``: torchvision ``Resize(S, interpolation=BICUBIC, antialias=True)`` (short
  side to S) then ``CenterCrop(S)``, on PIL images: TiTok, One-D-Piece, and the official ALIT path
  for custom images (``--testing_custom_images`` and the notebooks).

Both are byte-identical to the torchvision transforms applied to the same PIL image followed by
``PILToTensor`` (tests/test_data.py checks this).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image

from alit_eval.registry import Registry


@dataclass(frozen=True)
class PreprocessMode:
    """One named preprocessing: `fn(img, size)` maps an RGB PIL image to uint8 [3, size, size]."""

    name: str
    fn: Callable[[Image.Image, int], torch.Tensor]
    description: str


def _crop_start(length: int, size: int) -> int:
    """First source index of a centred window of `size` over `length` pixels (negative = padding).

    Reproduces torchvision 0.29 ``transforms.functional.center_crop``: a short side is padded by
    ``(size - length) // 2`` before and ``(size - length + 1) // 2`` after, so the extra pixel of an
    odd difference goes after the image; a long side is cropped from
    ``int(round((length - size) / 2.0))``, Python's round-half-to-even included (e.g. 122.5 -> 122).
    """
    if size > length:
        return -((size - length) // 2)
    return int(round((length - size) / 2.0))


def center_crop_pil(img: Image.Image, size: int) -> torch.Tensor:
    """Centre-crop (zero-padding short sides) an RGB PIL image to a uint8 tensor.

    Args:
        img: PIL image in mode "RGB", any size >= 1x1.
        size: output side S.

    Returns:
        uint8 tensor [3, S, S]; padded pixels are 0.
    """
    width, height = img.size
    left, top = _crop_start(width, size), _crop_start(height, size)
    # Crop only the part of the window that lies inside the image (cheap on large photos), then
    # place it in a zero canvas: the same pixels torchvision's pad-then-crop produces.
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + size, width), min(top + size, height)
    inside = _to_tensor(img.crop((x0, y0, x1, y1)))
    if inside.shape[1:] == (size, size):
        return inside
    out = torch.zeros((3, size, size), dtype=torch.uint8)
    out[:, y0 - top : y1 - top, x0 - left : x1 - left] = inside
    return out


def resize_center_crop_pil(img: Image.Image, size: int) -> torch.Tensor:
    """Bicubic antialiased resize of the short side to S, then centre crop.

    Args:
        img: PIL image in mode "RGB".
        size: output side S.

    Returns:
        uint8 tensor [3, S, S].
    """
    # torchvision's PIL path (Pillow's antialiased bicubic; the long side becomes
    # int(S * long / short)); using it directly is what keeps parity with the reference pipelines.
    if img.size == (size, size):  # Pillow returns such a resize as a copy: nothing to do
        return _to_tensor(img)
    # Imported here, not at module level: torchvision's import takes seconds (it loads torch._dynamo).
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    resized = TF.resize(img, [size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return center_crop_pil(resized, size)


def _to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


PREPROCESS: Registry[PreprocessMode] = Registry("preprocess mode")
PREPROCESS.register(
    "center-crop",
    PreprocessMode(
        "center-crop",
        center_crop_pil,
        "CenterCrop(S) without resizing; sides shorter than S zero-padded as torchvision pads them "
        "(official ALIT evaluation, evaluate_rfid.py)",
    ),
)
PREPROCESS.register(
    "resize-center-crop",
    PreprocessMode(
        "resize-center-crop",
        resize_center_crop_pil,
        "Resize(S, bicubic, antialias) of the short side on the PIL image, then CenterCrop(S) "
        "(TiTok, One-D-Piece, official ALIT custom-image path)",
    ),
)


def preprocess(img: Image.Image, mode: str, size: int) -> torch.Tensor:
    """Apply the named preprocess mode.

    Args:
        img: decoded PIL image in mode "RGB" (see `alit_eval.data.decode.load_image`).
        mode: a name in `PREPROCESS` ("center-crop", "resize-center-crop").
        size: output side S (> 0).

    Returns:
        uint8 tensor [3, S, S] in [0, 255].

    Raises:
        AlitEvalError: unknown mode (with "did you mean").
        ValueError: a non-RGB image or a non-positive size (programming errors).
    """
    entry = PREPROCESS.get(mode)
    if img.mode != "RGB":
        raise ValueError(f"preprocess expects an RGB PIL image (see load_image); got mode {img.mode!r}")
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    return entry.fn(img, size)


def describe(mode: str) -> str:
    """One-line description of a preprocess mode, for meta.json."""
    return f"{mode}: {PREPROCESS.get(mode).description}"
