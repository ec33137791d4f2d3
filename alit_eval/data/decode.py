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
- Decode memory is bounded: before any pixel is decoded, the decoded size read from the header
  (pixels x channels x bytes per sample) is checked against `MAX_DECODED_BYTES` (1 GiB, or the
  environment variable ``ALIT_EVAL_MAX_DECODE_BYTES``, or the ``max_decoded_bytes`` argument); a larger
  image is refused. Pillow's pixel limit alone lets a 16-bit RGBA image of 88 M pixels through (707 MB
  of samples). The 16-bit path converts to 8 bits in bands of rows, so the peak stays near two
  8-bit RGBA copies plus the RGB output (benchmarks/bench_decode_memory.py measures it).
- Only regular files are opened (`open_regular`): a FIFO, device or socket is refused without
  blocking, so a named pipe in a data folder cannot hang a run.
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

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

MAX_DECODED_BYTES = 1 << 30
"""Default limit on an image's decoded samples in bytes (pixels x channels x bytes per sample)."""
MAX_DECODED_BYTES_ENV = "ALIT_EVAL_MAX_DECODE_BYTES"

# Rows converted at a time on the 16-bit path: the temporaries are a few MB, whatever the image.
_BAND_PIXELS = 1 << 20

_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"),
)


def max_decoded_bytes(explicit: int | None = None) -> int:
    """The decode-size limit in bytes: `explicit`, else ``$ALIT_EVAL_MAX_DECODE_BYTES``, else 1 GiB.

    Raises:
        DataError: the environment variable is not a positive whole number.
    """
    if explicit is not None:
        return int(explicit)
    text = os.environ.get(MAX_DECODED_BYTES_ENV, "").strip()
    if not text:
        return MAX_DECODED_BYTES
    try:
        value = int(text)
        if value <= 0:
            raise ValueError(text)
    except ValueError:
        raise DataError(f"{MAX_DECODED_BYTES_ENV}={text!r}: give a positive number of bytes") from None
    return value


def file_kind(mode: int) -> str:
    """What a non-regular ``st_mode`` is, in words ("a FIFO (named pipe)", ...)."""
    for test, name in _FILE_KINDS:
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | Path) -> BinaryIO:
    """Open a file for reading only if it is a regular file, never blocking on a FIFO.

    The file is opened with ``O_NONBLOCK`` (opening a FIFO for reading then returns at once instead
    of waiting for a writer) and its type is checked on the open descriptor, so a path swapped for
    a pipe between a check and the open cannot hang the caller either.

    Args:
        path: the file (symlinks are followed; use `alit_eval.data.datasets` rules for containment).

    Returns:
        A binary file object positioned at 0 (the caller closes it).

    Raises:
        OSError: the file cannot be opened (missing, permission, symlink loop...).
        DataError: it is not a regular file (``"not a regular file: a FIFO (named pipe)"``).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(f"not a regular file: {file_kind(mode)}; only regular files are read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def load_image(
    path: str | Path, *, exif_orientation: bool = True, max_bytes: int | None = None
) -> Image.Image:
    """Decode one image file to an 8-bit RGB PIL image.

    Args:
        path: image file (any format Pillow reads; the first frame of multi-frame files); only a
            regular file is opened.
        exif_orientation: rotate/flip according to the EXIF orientation tag (a malformed EXIF block
            is ignored, since the pixels themselves are fine).
        max_bytes: decode-size limit in bytes (see `max_decoded_bytes`); None reads the default.

    Returns:
        A fully loaded PIL image in mode "RGB" (uint8 per channel), detached from the file.

    Raises:
        DataError: ``"cannot decode <path>: <reason>"`` for a missing, unreadable, corrupt, truncated
            or over-sized (decompression-bomb or over `max_bytes`) file, and for anything that is
            not a regular file (FIFO, device, socket, folder).
    """
    path = Path(path)
    limit = max_decoded_bytes(max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", message=_PALETTE_WARNING)
            with open_regular(path) as fp:
                return _decode(fp, exif_orientation, limit)
    except DataError as err:
        raise DataError(f"cannot decode {path}: {err}") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(
            f"cannot decode {path}: {_one_line(err).rstrip('.')} (PIL.Image.MAX_IMAGE_PIXELS = "
            f"{Image.MAX_IMAGE_PIXELS}); if you trust the file, raise PIL.Image.MAX_IMAGE_PIXELS "
            "(or set it to None) before loading"
        ) from err
    except Exception as err:  # noqa: BLE001 - every decoder failure becomes one user-facing line
        raise DataError(f"cannot decode {path}: {_reason(err)}") from err


def decoded_bytes(im: Image.Image) -> int:
    """Bytes of decoded samples of an opened (not yet loaded) image, from its header alone.

    pixels x channels x bytes per sample, where 16-bit raw modes (``;16`` in the tile's raw mode,
    or the ``I;16`` modes) count 2 bytes and the 32-bit ``I``/``F`` modes count 4.
    """
    width, height = im.size
    bands = len(im.getbands())
    rawmodes = [t[3] if isinstance(t[3], str) else str(t[3]) for t in (getattr(im, "tile", None) or [])]
    if im.mode in ("I", "F"):
        sample = 4
    elif im.mode.startswith("I;16") or any(";16" in r for r in rawmodes):
        sample = 2
    else:
        sample = 1
    return width * height * bands * sample


def _check_size(im: Image.Image, limit: int) -> None:
    need = decoded_bytes(im)
    if need > limit:
        width, height = im.size
        raise DataError(
            f"{width}x{height} {im.mode} image needs {need / 2**20:.0f} MiB to decode, over the "
            f"{limit / 2**20:.0f} MiB limit; if you trust the file, raise {MAX_DECODED_BYTES_ENV} "
            "(bytes) or downscale it"
        )


def _decode(fp: BinaryIO, exif_orientation: bool, limit: int) -> Image.Image:
    with Image.open(fp) as im:
        _check_size(im, limit)  # from the header: nothing is decoded yet
        # The raw mode is only visible before load(), which empties `im.tile`.
        low_rawmode = _png16_low_byte_rawmode(im)
        im.load()
        if low_rawmode is not None:
            fp.seek(0)
            low = _decode_low_bytes(fp, low_rawmode)
            if low is not None:
                # Rounding is per pixel, so orienting the combined RGB image equals orienting both
                # halves first, with one full-size copy fewer.
                return _orient(_combine_16bit(im, low), exif_orientation)
        return _to_rgb8(_orient(im, exif_orientation))


def _png16_low_byte_rawmode(im: Image.Image) -> str | None:
    tile = getattr(im, "tile", None)
    if im.format != "PNG" or not tile or len(tile) != 1:
        return None
    return _PNG16_LOW_BYTE_RAWMODE.get(tile[0][3])


def _decode_low_bytes(fp: BinaryIO, rawmode: str) -> Image.Image | None:
    """Decode a 16-bit PNG again keeping the low byte of each sample; None if Pillow refuses."""
    try:
        with Image.open(fp) as im:
            tile = im.tile[0]
            im.tile = [tile._replace(args=rawmode) if hasattr(tile, "_replace") else (*tile[:3], rawmode)]
            im.load()
            return im
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
    """8-bit RGB from the high- and low-byte images, converted in bands of rows.

    Converting whole images at once made ~10 bytes of temporaries per sample (7 GB for a 9400^2
    RGBA PNG); bands keep the temporaries to a few MB, so the peak is the two 8-bit inputs and
    the output.
    """
    width, height = high.size
    out = np.empty((height, width, 3), dtype=np.uint8)
    step = max(1, _BAND_PIXELS // max(width, 1))
    for y0 in range(0, height, step):
        box = (0, y0, width, min(y0 + step, height))
        hi = np.asarray(high.crop(box), dtype=np.uint32)
        lo = np.asarray(low.crop(box), dtype=np.uint32)
        out[box[1] : box[3]] = _round_16_to_8(hi * 256 + lo)[..., :3]  # drops alpha like convert("RGB")
    high.close()
    low.close()
    return Image.fromarray(out)


def _round_16_to_8(value: np.ndarray) -> np.ndarray:
    # round(v / 257) for integers; the remainder is never exactly 128.5, so no tie rule is needed.
    return ((np.clip(value, 0, 65535).astype(np.int64) + 128) // 257).astype(np.uint8)


def _gray16_to_rgb(im: Image.Image) -> Image.Image:
    """16-bit (or "I") grayscale to 8-bit RGB by ``round(v / 257)``, in bands of rows."""
    width, height = im.size
    out = np.empty((height, width, 3), dtype=np.uint8)
    step = max(1, _BAND_PIXELS // max(width, 1))
    for y0 in range(0, height, step):
        box = (0, y0, width, min(y0 + step, height))
        out[box[1] : box[3]] = _round_16_to_8(np.asarray(im.crop(box)).astype(np.int64))[..., None]
    return Image.fromarray(out)


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)))


def _to_rgb8(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        # "I" is how older Pillow versions and some TIFF readers hand out 16-bit grayscale, so it is
        # read on the same 0..65535 scale (values outside are clipped).
        return _gray16_to_rgb(im)
    if mode == "F":
        return _gray_to_rgb(_float_to_8bit(np.asarray(im, dtype=np.float64)))
    if mode == "RGB":
        return im  # already loaded; convert() would only add a full-size copy
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
    if isinstance(err, OSError) and err.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    text = _one_line(err)
    return text if text else type(err).__name__


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
