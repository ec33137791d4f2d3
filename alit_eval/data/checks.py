"""Pre-run checks of a file dataset that warn without changing any number.

`find_duplicates` finds files with the same bytes (each is still counted, as the user asked for
both; the warning says so). `scan_headers` reads the image headers only, once: the images that
``center-crop`` will zero-pad because a side is shorter than the model's input size, and the images
stored in a mode other than RGB (greyscale, palette, alpha, 16-bit), which decoding converts to RGB.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image

from alit_eval.data.datasets import ImageRecord
from alit_eval.data.decode import open_regular
from alit_eval.errors import DataError


def find_duplicates(records: Sequence[ImageRecord]) -> list[tuple[str, str]]:
    """Pairs of records whose files hold the same bytes: ``(first id, later id)``, in record order.

    Only files whose sizes collide are hashed (sha256), so a folder of distinct photos costs one
    ``stat`` per file. Records with a `skip` reason and files that cannot be read are ignored
    (decoding reports those).
    """
    by_size: dict[int, list[ImageRecord]] = {}
    for r in records:
        if r.skip is not None:
            continue
        try:
            st = os.stat(r.path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            by_size.setdefault(st.st_size, []).append(r)
    first_of: dict[str, str] = {}
    pairs: list[tuple[int, str, str]] = []
    order = {r.id: i for i, r in enumerate(records)}
    for group in by_size.values():
        if len(group) < 2:
            continue
        for r in group:
            digest = _sha256(r.path)
            if digest is None:
                continue
            if digest in first_of:
                pairs.append((order[r.id], first_of[digest], r.id))
            else:
                first_of[digest] = r.id
    return [(a, b) for _, a, b in sorted(pairs)]


def _sha256(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open_regular(path) as fp:
            for block in iter(lambda: fp.read(1 << 20), b""):
                h.update(block)
    except (OSError, DataError):
        return None
    return h.hexdigest()


# How `alit_eval.data.decode` turns each non-RGB mode into RGB (as torchvision's loader, but for 16-bit
# and float samples, which it rounds instead of clipping).
CONVERSIONS: dict[str, str] = {
    "1": "black/white repeated in R, G, B", "L": "grey repeated in R, G, B",
    "LA": "grey repeated in R, G, B, alpha dropped", "I;16": "16-bit grey rounded to 8 bits, repeated in R, G, B",
    "I": "read as 16-bit grey, rounded to 8 bits, repeated in R, G, B",
    "F": "float grey scaled to 8 bits, repeated in R, G, B", "P": "palette colours", "PA": "palette colours, alpha dropped",
    "RGBA": "alpha dropped", "CMYK": "Pillow's CMYK conversion", "YCbCr": "Pillow's YCbCr conversion",
}


@dataclass
class HeaderScan:
    """What the image headers say before any pixel is decoded.

    Attributes:
        padded: ids of the images whose shorter side is below the model size (``center-crop`` zero-pads them).
        modes: Pillow mode -> ids of the images stored in that mode other than RGB (converted to RGB).
    """

    padded: list[str] = field(default_factory=list)
    modes: dict[str, list[str]] = field(default_factory=dict)


def scan_headers(records: Sequence[ImageRecord], size: int) -> HeaderScan:
    """One pass over the headers (size and mode only, no pixels): padded and non-RGB images.

    EXIF orientation may swap width and height, which leaves the shorter side unchanged. Unreadable
    or skipped files are left to the decoder.

    Args:
        records: the dataset's records.
        size: the model's input side S.

    Returns:
        The ids in record order.
    """
    scan = HeaderScan()
    for r in records:
        if r.skip is not None:
            continue
        try:
            with open_regular(r.path) as fp, Image.open(fp) as im:
                if min(im.size) < size:
                    scan.padded.append(r.id)
                mode = "I;16" if im.mode.startswith("I;16") else im.mode
                if mode != "RGB":
                    scan.modes.setdefault(mode, []).append(r.id)
        except Exception:  # noqa: BLE001 - a broken file is reported by the decoder, not here
            continue
    return scan
