"""Robust image decoding: any file Pillow can read becomes an 8-bit RGB PIL image, or one DataError.

Conventions (they match torchvision's default `ImageFolder` loader, ``Image.open(f).convert("RGB")``,
except where that loader is lossy for no reason):

- EXIF orientation is applied (`exif_orientation=True`, the default). The official ALIT evaluation
  (torchvision's loader) ignores it; pass ``exif_orientation=False`` for byte parity with that.
- Alpha is dropped, not composited: RGBA/LA/PA take their stored colour channels and palette images
  take their palette colour, exactly as ``convert("RGB")`` does in torchvision's loader.
- 16-bit samples are rescaled to 8 bits with rounding, ``round(v / 257)`` (65535 -> 255), instead
  of Pillow's clipping (grayscale) or high-byte truncation (colour PNG).
- The image is decoded fully here, so a truncated or corrupt file fails in this function, not later.
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is deliberately left alone.
- Pillow's decompression-bomb guard (``PIL.Image.MAX_IMAGE_PIXELS``) is honoured, and its warning
  level counts as an error here: an over-sized image is refused rather than decoded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from alit_eval.errors import DataError

_EXIF_ORIENTATION_TAG = 0x0112

# Pillow unpacks 16-bit colour PNG samples (stored big-endian) to 8 bits by keeping the high byte,
# i.e. floor(v / 256). Decoding the same stream a second time with the little-endian raw mode keeps
# the low byte instead, so the two passes together recover the full 16-bit value. Other 16-bit
# colour layouts (e.g. 16-bit gray+alpha PNG, 16-bit TIFF) keep Pillow's high byte: off by <= 1 level.
_PNG16_LOW_BYTE_RAWMODE = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}

# torchvision's loader converts palette images with byte-string transparency straight to RGB; Pillow
# warns that RGBA would keep the transparency. We follow the loader, so the warning is noise.
_PALETTE_WARNING = "Palette images with Transparency expressed in bytes"


def load_image(path: str | Path, *, exif_orientation: bool = True) -> Image.Image:
    """Decode one image file to an 8-bit RGB PIL image.

    Args:
        path: image file (any format Pillow reads; the first frame of multi-frame files).
        exif_orientation: rotate/flip according to the EXIF orientation tag (a malformed EXIF block
            is ignored, since the pixels themselves are fine).

    Returns:
        A fully loaded PIL image in mode "RGB" (uint8 per channel), detached from the file.

    Raises:
        DataError: ``"cannot decode <path>: <reason>"`` for a missing, unreadable, corrupt, truncated
            or over-sized (decompression-bomb) file.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", message=_PALETTE_WARNING)
            return _decode(path, exif_orientation)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(
            f"cannot decode {path}: {_one_line(err).rstrip('.')} (PIL.Image.MAX_IMAGE_PIXELS = "
            f"{Image.MAX_IMAGE_PIXELS}); if you trust the file, raise PIL.Image.MAX_IMAGE_PIXELS "
            "(or set it to None) before loading"
        ) from err
    except Exception as err:  # noqa: BLE001 - every decoder failure becomes one user-facing line
        raise DataError(f"cannot decode {path}: {_reason(err)}") from err


def _decode(path: Path, exif_orientation: bool) -> Image.Image:
    with Image.open(path) as im:
        # The raw mode is only visible before load(), which empties `im.tile`.
        low_rawmode = _png16_low_byte_rawmode(im)
        im.load()
        high = _orient(im, exif_orientation)
        if low_rawmode is not None:
            low = _decode_low_bytes(path, low_rawmode)
            if low is not None:
                return _combine_16bit(high, _orient(low, exif_orientation))
        return _to_rgb8(high)


def _png16_low_byte_rawmode(im: Image.Image) -> str | None:
    tile = getattr(im, "tile", None)
    if im.format != "PNG" or not tile or len(tile) != 1:
        return None
    return _PNG16_LOW_BYTE_RAWMODE.get(tile[0][3])


def _decode_low_bytes(path: Path, rawmode: str) -> Image.Image | None:
    """Decode a 16-bit PNG again keeping the low byte of each sample; None if Pillow refuses."""
    try:
        with Image.open(path) as im:
            tile = im.tile[0]
            im.tile = [tile._replace(args=rawmode) if hasattr(tile, "_replace") else (*tile[:3], rawmode)]
            im.load()
            return im.copy()
    except Exception:  # noqa: BLE001 - the high byte alone is still a valid (<= 1 level off) image
        return None


def _orient(im: Image.Image, enabled: bool) -> Image.Image:
    if not enabled:
        return im
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION_TAG, 1)
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - malformed EXIF: keep the pixels as stored
        pass
    return im


def _combine_16bit(high: Image.Image, low: Image.Image) -> Image.Image:
    value = np.asarray(high, dtype=np.uint32) * 256 + np.asarray(low, dtype=np.uint32)
    return Image.fromarray(_round_16_to_8(value)[..., :3])  # drops alpha like convert("RGB")


def _round_16_to_8(value: np.ndarray) -> np.ndarray:
    # round(v / 257) for integers; the remainder is never exactly 128.5, so no tie rule is needed.
    return ((np.clip(value, 0, 65535).astype(np.int64) + 128) // 257).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)))


def _to_rgb8(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        # "I" is how older Pillow versions and some TIFF readers hand out 16-bit grayscale, so it is
        # read on the same 0..65535 scale (values outside are clipped).
        return _gray_to_rgb(_round_16_to_8(np.asarray(im).astype(np.int64)))
    if mode == "F":
        return _gray_to_rgb(_float_to_8bit(np.asarray(im, dtype=np.float64)))
    try:
        return im.convert("RGB")
    except ValueError:
        # A few rare modes (e.g. premultiplied "La") have no direct path to RGB.
        return im.convert("RGBA").convert("RGB")


def _float_to_8bit(values: np.ndarray) -> np.ndarray:
    """Float images: [0, 1] intensities when every finite value lies in [0, 1], else the [0, 255]
    scale that Pillow's own conversion assumes. NaN becomes 0; values are clipped and rounded."""
    finite = values[np.isfinite(values)]
    scale = 255.0 if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0 else 1.0
    values = np.nan_to_num(values * scale, nan=0.0, posinf=255.0, neginf=0.0)
    return np.floor(np.clip(values, 0.0, 255.0) + 0.5).astype(np.uint8)


def _reason(err: BaseException) -> str:
    if isinstance(err, UnidentifiedImageError):
        return "not a recognised image file (unknown format or corrupt header)"
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, IsADirectoryError):
        return "is a directory"
    if isinstance(err, PermissionError):
        return "permission denied"
    text = _one_line(err)
    return text if text else type(err).__name__


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
