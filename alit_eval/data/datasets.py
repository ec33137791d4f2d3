"""Dataset sources (a folder, a file list, a glob) -> ordered image records, and the torch Dataset.

`discover` turns a source string into `ImageRecord`s in a canonical order; `select` picks a
deterministic subset; `ImageDataset` decodes and preprocesses one record at a time and reports a bad
file instead of raising, and `collate` stacks the good images of a batch and lists the failures.
Names beginning with ``demo-`` are procedural demo datasets, dispatched by the engine to
`alit_eval.data.demo`; `discover` refuses them with a pointer there.

Hostile folders: only regular files are ever opened (`alit_eval.data.decode.open_regular`), so a
FIFO is skipped with its reason instead of hanging the run. A symlink inside the data root whose
target lies outside it (e.g. ``up -> ..``) is not followed unless ``follow_symlinks=True``; it
becomes a skipped record whose reason names the option. Folder symlink loops are walked once.
"""

from __future__ import annotations

import csv
import glob
import io
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from alit_eval.data.decode import load_image, open_regular
from alit_eval.data.transforms import PREPROCESS
from alit_eval.data.transforms import preprocess as apply_preprocess
from alit_eval.errors import DataError

# The formats the brief names, plus .ppm/.pgm, which torchvision's ImageFolder also accepts.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
)
LIST_EXTENSIONS: tuple[str, ...] = (".txt", ".csv")
_GLOB_CHARS = ("*", "?", "[")
_HEADER_PATH = {"path", "image"}
FOLLOW_SYMLINKS_HINT = "pass follow_symlinks=True (CLI: --follow-symlinks) to read it"


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset.

    Attributes:
        id: stable identifier: the path relative to the dataset root with forward slashes, or the
            path as written in a list file.
        path: file to decode.
        label: class name, or None when the source has no labels.
        skip: why the record is not read (e.g. a symlink leaving the data root), or None; the
            dataset reports it as a skipped image without opening anything.
    """

    id: str
    path: Path
    label: str | None = None
    skip: str | None = None


def is_image_name(name: str) -> bool:
    """True when a file name has one of `IMAGE_EXTENSIONS` (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def source_kind(source: str | Path) -> str:
    """Classify a source: "folder", "list", "image", "other-file", "glob", "demo" or "missing"."""
    text = str(source)
    path = Path(text)
    if path.is_dir():
        return "folder"
    if path.is_file():
        if path.suffix.lower() in LIST_EXTENSIONS:
            return "list"
        return "image" if is_image_name(path.name) else "other-file"
    if any(ch in text for ch in _GLOB_CHARS):
        return "glob"
    if text.startswith("demo-"):
        return "demo"
    return "missing"


def discover(source: str | Path, *, follow_symlinks: bool = False) -> list[ImageRecord]:
    """List the images of a source in canonical order.

    Sources: a folder (recursive; ImageFolder-style labels when every image lies in a first-level
    subfolder), a ``.txt``/``.csv`` list of ``path[,label]`` lines, a glob (``**`` recursive), or a
    single image file. Folder and glob records are ordered as torchvision's ImageFolder visits files
    (class, folder, file name), so batch-size-1 runs consume random draws in the official order;
    list-file records keep the order of the file.

    Args:
        source: folder, list file, image file or glob pattern.
        follow_symlinks: read symlinks whose target lies outside the data root (the folder, the
            glob's fixed prefix, or the list file's folder for relative entries). Off by default:
            such a symlink becomes a record with a `skip` reason. Paths written explicitly in a
            list (absolute, or with ``..``) are read as given.

    Returns:
        Non-empty list of `ImageRecord` (records with a `skip` reason included, in order).

    Raises:
        DataError: missing path, malformed list file, duplicate ids, no images, or a ``demo-`` name.
    """
    kind = source_kind(source)
    if kind == "folder":
        root = Path(source)
        files, skipped = _walk_images(root, follow_symlinks)
        records = _records_under(root, files, skipped)
    elif kind == "list":
        records = _read_list(Path(source), follow_symlinks)
    elif kind == "glob":
        records = _discover_glob(str(source), follow_symlinks)
    elif kind == "image":
        path = Path(source)
        records = [ImageRecord(path.name, path, None)]
    elif kind == "other-file":
        raise DataError(
            f"{source} is neither a file list (.txt/.csv) nor an image ({', '.join(IMAGE_EXTENSIONS)})"
        )
    elif kind == "demo":
        raise DataError(
            f"{source!r} is a procedural demo dataset: it is generated by alit_eval.data.demo, not "
            "discovered on disk"
        )
    else:
        raise DataError(
            f"dataset source not found: {source} (expected a folder, a .txt/.csv list, an image or a glob)"
        )
    if not records:
        raise DataError(
            f"no images found in {source} (looked for extensions {', '.join(IMAGE_EXTENSIONS)})"
        )
    return records


def class_names(records: Iterable[ImageRecord]) -> list[str]:
    """Sorted distinct labels (ImageFolder's class list for folder sources); [] when unlabelled."""
    return sorted({r.label for r in records if r.label is not None})


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _escape_reason(is_dir: bool) -> str:
    what = "a folder" if is_dir else "a file"
    return f"symlink to {what} outside the data root, not followed; {FOLLOW_SYMLINKS_HINT}"


def _walk_images(root: Path, follow_symlinks: bool = False) -> tuple[list[Path], dict[Path, str]]:
    """Files under `root` with an image extension, and the symlinks skipped with their reason.

    Symlinked folders inside the root are followed, each real folder once (so ``loop -> .`` ends);
    a symlink (file or folder) whose target lies outside the root is only followed with
    `follow_symlinks`. Other file types (FIFOs...) are listed here and refused when opened.
    """
    real_root = os.path.realpath(root)
    found: list[Path] = []
    skipped: dict[Path, str] = {}
    seen: set[str] = set()
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue  # unreadable folder: as os.walk, skip it
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows a symlink; False for a dangling one
            except OSError:
                is_dir = False
            if not is_dir and not is_image_name(entry.name):
                continue
            if entry.is_symlink() and not follow_symlinks:
                if not _inside(os.path.realpath(entry.path), real_root):
                    skipped[Path(entry.path)] = _escape_reason(is_dir)
                    continue
            if is_dir:
                stack.append(entry.path)
            else:
                found.append(Path(entry.path))
    return found, skipped


def _records_under(
    root: Path, files: Sequence[Path], skipped: dict[Path, str] | None = None
) -> list[ImageRecord]:
    """Records with ids relative to `root`, labelled by first-level folder when all images have one.

    `skipped` (path -> reason) become records with that `skip` reason, sorted in with the others.
    """
    skipped = skipped or {}
    rel_of = {f: PurePosixPath(Path(os.path.relpath(f, root)).as_posix()) for f in [*files, *skipped]}
    good = [rel_of[f] for f in files]
    labelled = bool(good) and all(len(r.parts) > 1 for r in good)

    def order(item: tuple[PurePosixPath, Path]) -> tuple[str, str, str]:
        # ImageFolder: sorted classes, then sorted os.walk roots, then sorted file names.
        r = item[0]
        parent = "" if r.parent == PurePosixPath(".") else str(r.parent)  # top-level files first
        return (r.parts[0] if labelled else "", parent, r.name)

    pairs = sorted(rel_of.items(), key=lambda item: order((item[1], item[0])))
    return [
        ImageRecord(str(r), f, r.parts[0] if labelled and len(r.parts) > 1 else None, skipped.get(f))
        for f, r in pairs
    ]


def _in_loop(folder: Path, root: Path, cache: dict[Path, bool]) -> bool:
    """True when `folder` is reached through a symlink cycle (a real folder repeats on its path)."""
    if folder not in cache:
        chain, p = [], folder
        while p != root and p != p.parent:
            chain.append(os.path.realpath(p))
            p = p.parent
        chain.append(os.path.realpath(root))
        cache[folder] = len(set(chain)) < len(chain)
    return cache[folder]


def _discover_glob(pattern: str, follow_symlinks: bool = False) -> list[ImageRecord]:
    """Glob records; ids are relative to the pattern's fixed prefix (the folders before any wildcard)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if any(ch in part for ch in _GLOB_CHARS):
            break
        fixed.append(part)
    root = Path(*fixed) if fixed else Path(".")
    # Not `is_file()`: a FIFO must stay a (skipped) record, and `glob` already lists only names.
    files = [Path(p) for p in glob.glob(pattern, recursive=True)]
    files = [f for f in files if is_image_name(f.name) and not f.is_dir()]
    # `**` follows symlinked folders, so `loop -> .` lists every image again at each depth.
    loops: dict[Path, bool] = {}
    files = [f for f in files if not _in_loop(f.parent, root, loops)]
    skipped: dict[Path, str] = {}
    if not follow_symlinks:
        real_root = os.path.realpath(root)
        for f in files:
            if not _inside(os.path.realpath(f), real_root):
                skipped[f] = _escape_reason(False)
    return _records_under(root, [f for f in files if f not in skipped], skipped)


def _read_list(list_file: Path, follow_symlinks: bool = False) -> list[ImageRecord]:
    """Parse ``path[,label]`` CSV rows; relative paths are resolved against the list file's folder.

    The whole file goes through the `csv` module, so a quoted field may hold commas or newlines.
    A relative entry that lies inside the list's folder but resolves outside it through a symlink
    gets a `skip` reason unless `follow_symlinks`.
    """
    base = list_file.parent
    real_base = os.path.realpath(base)
    records: list[ImageRecord] = []
    seen: dict[str, int] = {}
    try:
        with open_regular(list_file) as fp:
            text = fp.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError, DataError) as err:
        raise DataError(f"cannot read list file {list_file}: {err}") from err
    first = True
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    while True:
        lineno = reader.line_num + 1  # first physical line of the next row
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise DataError(f"{list_file}:{lineno}: cannot parse the CSV row ({err})") from err
        fields = [f.strip() for f in row]
        stripped = ",".join(row).strip()
        if not any(fields) or fields[0].startswith("#"):
            continue
        if first:
            first = False
            if fields[0].lower() in _HEADER_PATH and (len(fields) == 1 or fields[1].lower() == "label"):
                continue
        if len(fields) > 2 or not fields[0]:
            raise DataError(f"{list_file}:{lineno}: expected 'path' or 'path,label', got {stripped!r}")
        ident = fields[0]
        if ident in seen:
            raise DataError(
                f"{list_file}:{lineno}: {ident!r} is listed twice (first on line {seen[ident]})"
            )
        seen[ident] = lineno
        label = fields[1] if len(fields) == 2 and fields[1] else None
        path = Path(ident).expanduser()
        skip = None
        if not path.is_absolute():
            path = base / path
            lexical = os.path.normpath(os.path.join(real_base, ident))
            if not follow_symlinks and _inside(lexical, real_base):
                if not _inside(os.path.realpath(path), real_base):
                    skip = _escape_reason(False)
        records.append(ImageRecord(ident, path, label, skip))
    return records


def select(
    records: Sequence[ImageRecord], limit: int | None, subset_seed: int | None = None
) -> list[ImageRecord]:
    """Pick at most `limit` records, deterministically.

    Args:
        records: records in canonical order (as `discover` returns them).
        limit: how many to keep; None keeps all.
        subset_seed: None takes the first `limit`; an int draws a random subset with
            ``numpy.random.Generator(PCG64(seed)).choice(n, limit, replace=False)``, the same on any
            machine.

    Returns:
        The chosen records, in their original (canonical) order.
    """
    records = list(records)
    if limit is None or limit >= len(records):
        return records
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if subset_seed is None:
        return records[:limit]
    chosen = np.random.default_rng(subset_seed).choice(len(records), size=limit, replace=False)
    return [records[i] for i in sorted(chosen.tolist())]


class ImageDataset(Dataset):
    """Decode + preprocess records one at a time; a bad file yields ``image=None`` and its error.

    Items are dicts ``{"index": int, "id": str, "label": str | None, "image": uint8 Tensor[3,S,S] |
    None, "error": str | None}``, so one corrupt file never kills a DataLoader worker. Picklable
    (for ``num_workers > 0``): it holds only records and names.
    """

    def __init__(
        self, records: Sequence[ImageRecord], preprocess: str, size: int, *, exif_orientation: bool = True
    ) -> None:
        PREPROCESS.get(preprocess)  # fail now, with "did you mean", rather than in a worker
        self.records = list(records)
        self.preprocess = preprocess
        self.size = size
        self.exif_orientation = exif_orientation

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image, error = None, None
        try:
            if record.skip is not None:
                raise DataError(f"skipped {record.path}: {record.skip}")
            decoded = load_image(record.path, exif_orientation=self.exif_orientation)
            image = apply_preprocess(decoded, self.preprocess, self.size)
        except DataError as err:
            error = str(err)
        return {"index": index, "id": record.id, "label": record.label, "image": image, "error": error}


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """DataLoader collate_fn for `ImageDataset` items.

    Returns:
        ``{"images": uint8 Tensor[B,3,S,S] of the decoded items (B may be 0, then shape [0,3,0,0]),
        "ids": list[str], "indices": list[int], "labels": list[str | None]`` (all for the decoded
        items, in batch order), ``"failed": list[tuple[id, error]]}``.
    """
    good = [it for it in items if it["image"] is not None]
    if good:
        images = torch.stack([it["image"] for it in good])
    else:
        images = torch.zeros((0, 3, 0, 0), dtype=torch.uint8)
    return {
        "images": images,
        "ids": [it["id"] for it in good],
        "indices": [it["index"] for it in good],
        "labels": [it["label"] for it in good],
        "failed": [(it["id"], it["error"]) for it in items if it["image"] is None],
    }
