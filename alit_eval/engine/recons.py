"""``--save-recons DIR``: every reconstruction the sweep measured, as a lossless PNG per budget.

Written from inside the sweep's batch loop (`alit_eval.engine.sweep`), from the very uint8 tensors
the metrics and Inception features are computed on (same rounding, or the official truncation with
``--official-truncation``), so another FID tool run on these folders sees exactly what alit-eval saw:

    DIR/original/<image_id>.png     the preprocessed original (S x S, uint8)
    DIR/<budget>/<image_id>.png     its reconstruction at that budget

An image id that is a relative path (``cat/001.jpg``) keeps its subfolders (``cat/001.jpg.png``);
leading ``/`` and ``..`` parts are dropped so nothing is written outside DIR.

Before anything is loaded, `check_folder` refuses a DIR that is a file, cannot be written, or
overlaps the dataset (PNGs written into an image folder would join the dataset on the next run).
On a rerun of a finished run, `drop_unsaved` removes from the stored shards the images whose PNGs
are missing, so the resumed sweep recomputes exactly those (same numbers) and writes their PNGs.
A failed PNG write is one line naming the file (`write_png`).
"""

from __future__ import annotations

import errno
import io
import logging
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np

from alit_eval.errors import AlitEvalError
from alit_eval.results.atomic import write_bytes

ORIGINAL = "original"
OPTION = "--save-recons"
_GLOB_CHARS = ("*", "?", "[")
log = logging.getLogger(__name__)


def data_root(data: str) -> Path | None:
    """The folder a dataset is discovered in (a folder, or a glob's fixed prefix); None otherwise.

    File lists and single images are not discovered by walking a folder, so PNGs written near them
    never join the dataset.
    """
    if data.startswith("demo-"):
        return None
    path = Path(data).expanduser()
    if path.is_dir():
        return path
    if any(ch in data for ch in _GLOB_CHARS) and not path.exists():
        fixed = []
        for part in path.parts[:-1]:
            if any(ch in part for ch in _GLOB_CHARS):
                break
            fixed.append(part)
        return Path(*fixed) if fixed else Path(".")
    return None


def _inside(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def check_folder(folder: str | Path, data: str) -> None:
    """Refuse a ``--save-recons`` folder that cannot hold the PNGs, before any model is loaded.

    Raises:
        AlitEvalError: `folder` (or a folder above it) is a file; the nearest existing folder
            cannot be written; `folder` lies inside the dataset's folder, or holds it.
    """
    from alit_eval.printable import printable

    folder = Path(folder).expanduser()
    shown = printable(folder)
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == folder else f"lies under {printable(probe)}, which is a file"
        raise AlitEvalError(f"{OPTION} {shown} {where}; give a folder (it is created when missing)")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise AlitEvalError(f"{OPTION} {shown}: {printable(probe)} is not writable (permission denied or a "
                            f"read-only file system); choose a writable folder for {OPTION}")
    root = data_root(data)
    if root is None:
        return
    out, data_dir = os.path.realpath(folder), os.path.realpath(root)
    if _inside(out, data_dir):
        raise AlitEvalError(f"{OPTION} {shown} lies inside the data folder {printable(root)}: its PNGs would "
                            f"join the dataset on the next run; choose a folder outside {printable(root)}")
    if _inside(data_dir, out):
        raise AlitEvalError(f"{OPTION} {shown} holds the data folder {printable(root)}: PNGs written there "
                            "would mix with the dataset; choose a folder that does not contain the data")


def drop_unsaved(run_path: str | Path, folder: str | Path, budgets: Sequence[int], *,
                 official_stream: bool = False) -> int:
    """Drop from a resumed run's shards the images whose PNGs are missing under `folder`.

    The resumed sweep then recomputes them (and only them) and writes their PNGs: a rerun of a
    finished run with ``--save-recons`` writes every PNG, with the same numbers, instead of reading
    the run back and writing none. With the official (global) halting stream, the first affected
    shard and all later ones are dropped, since later draws depend on earlier ones.

    Returns:
        How many images will be recomputed.
    """
    from alit_eval.engine.store import ShardStore, load_shard

    store = ShardStore(Path(run_path))
    keys = (ORIGINAL, *(int(b) for b in budgets))
    affected: dict[Path, set[int]] = {}
    for path in store.files():
        shard = load_shard(path, ["index", "id"])
        if "index" not in shard or "id" not in shard:
            continue
        missing = {int(i) for i, image_id in zip(shard["index"].tolist(), shard["id"].tolist())
                   if not all(recon_path(folder, k, str(image_id)).is_file() for k in keys)}
        if missing:
            affected[path] = missing
    if not affected:
        return 0
    count = sum(len(v) for v in affected.values())
    if official_stream:
        first = min(int(p.stem) for p in affected)
        for path in store.files():
            if int(path.stem) >= first:
                store.remove(path)
    else:
        for path, positions in affected.items():
            store.drop_positions(path, positions)
    from alit_eval.printable import printable

    log.warning("%s: %d image(s) of this run have no PNGs in %s; recomputing them to write them (same numbers)",
                OPTION, count, printable(folder))
    return count


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


def write_png(array: np.ndarray, path: Path, *, option: str = OPTION) -> None:
    """Write a uint8 ``[3, H, W]`` image as a lossless PNG (atomically).

    Raises:
        AlitEvalError: the file cannot be written (disk full, permissions): one line naming the file
            and `option`, the setting that chose where it goes.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0))).save(buf, format="PNG")
    try:
        write_bytes(buf.getvalue(), path)
    except AlitEvalError as exc:
        if isinstance(exc.__cause__, OSError):
            raise png_error(exc.__cause__, path, option) from exc.__cause__
        raise
    except OSError as exc:  # an errno the results writer does not translate
        raise png_error(exc, path, option) from exc


def png_error(exc: OSError, path: Path, option: str) -> AlitEvalError:
    """One line for a PNG that could not be written: the file, the reason, free space when full."""
    from alit_eval.printable import printable

    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        probe = Path(path)
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        try:
            reason += f"; {shutil.disk_usage(probe).free / 2**20:.1f} MiB free there"
        except OSError:
            pass
        return AlitEvalError(f"cannot write {printable(path)} ({reason}); free some space or choose another {option}")
    return AlitEvalError(f"cannot write {printable(path)} ({reason}); choose a writable folder for {option}")


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
