"""Pre-run checks of a file dataset that warn without changing any number.

`find_duplicates` finds files with the same bytes (each is still counted, as the user asked for
both; the warning says so). `padded_by_center_crop` lists the images that ``center-crop`` will
zero-pad because a side is shorter than the model's input size, from the image headers only.
"""

from __future__ import annotations

import hashlib
import os
import stat
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


def padded_by_center_crop(records: Sequence[ImageRecord], size: int) -> list[str]:
    """Ids of the images whose shorter side is below `size`, which ``center-crop`` zero-pads.

    Reads each header (size only, no pixels). EXIF orientation may swap width and height, which
    leaves the shorter side unchanged. Unreadable or skipped files are left to the decoder.

    Args:
        records: the dataset's records.
        size: the model's input side S.

    Returns:
        Ids in record order.
    """
    padded: list[str] = []
    for r in records:
        if r.skip is not None:
            continue
        try:
            with open_regular(r.path) as fp, Image.open(fp) as im:
                if min(im.size) < size:
                    padded.append(r.id)
        except Exception:  # noqa: BLE001 - a broken file is reported by the decoder, not here
            continue
    return padded
