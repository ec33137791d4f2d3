"""Resolve a ``--data`` argument (folder, file list, glob or demo split) to a torch Dataset.

The engine calls `open_source` and never cares which kind it got: every dataset yields the same
item dicts as `ImageDataset` (index, id, label, uint8 image ``[3,S,S]`` or None plus an error).
Demo splits are generated at the tokenizer's size and carry their ground truth as extra columns.
File datasets are checked before the run (`alit_eval.data.checks`): duplicate files and images that
``center-crop`` zero-pads are logged as warnings and kept on the `Source` for the run's summary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from alit_eval.data import demo
from alit_eval.data.checks import CONVERSIONS, find_duplicates, scan_headers
from alit_eval.data.datasets import ImageDataset, ImageRecord, discover, select
from alit_eval.data.decode import max_decoded_bytes
from alit_eval.errors import DataError
from alit_eval.printable import printable

DEMO_DEFAULT_N = 100
FIRST_SHOWN = 3  # how many examples a warning names

log = logging.getLogger(__name__)


class DemoDataset(Dataset):
    """A procedural demo split (`alit_eval.data.demo`) as a Dataset of preprocessed items."""

    def __init__(self, split: str, n: int, size: int, seed: int = demo.EVAL_SEED) -> None:
        if split not in demo.SPLITS:
            raise DataError(f"unknown demo split {split!r}; valid: {', '.join(demo.SPLITS)}")
        if n <= 0:
            raise DataError(f"demo split {split} needs a positive number of images (got {n})")
        self.split, self.n, self.size, self.seed = split, n, size, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = demo.generate(self.split, index, seed=self.seed, size=self.size)
        image = torch.from_numpy(s.image).permute(2, 0, 1).contiguous()
        return {"index": index, "id": s.id, "label": s.label, "image": image, "error": None}

    def ground_truth(self) -> list[dict[str, Any]]:
        return [demo.ground_truth_row(demo.generate(self.split, i, seed=self.seed, size=self.size))
                for i in range(self.n)]


@dataclass
class Source:
    """A resolved dataset: the Dataset, its kind and what to record about it.

    Attributes:
        dataset: yields the item dicts of `ImageDataset`.
        kind: ``"demo"`` or ``"files"``.
        name: the ``--data`` argument.
        preprocess: the preprocess mode (``"generated"`` for demo splits).
        info: what the run config records (it is part of the run id: add nothing run-invariant).
        padded: ids of images ``center-crop`` zero-pads (a side shorter than the model size).
        duplicates: ``(first id, later id)`` pairs of files with the same bytes (both are used).
        converted: Pillow mode -> ids of the images stored in that mode, converted to RGB on decoding.
        warnings: one line per finding above that may change what a number means, as logged; for the
            run's console summary.
        notes: lines for the summary that change no number's meaning (non-RGB images converted to RGB).
    """

    dataset: Dataset
    kind: str
    name: str
    preprocess: str
    info: dict[str, Any] = field(default_factory=dict)
    padded: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    converted: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def open_source(
    data: str,
    *,
    size: int,
    preprocess: str,
    limit: int | None = None,
    subset_seed: int | None = None,
    follow_symlinks: bool = False,
    check_duplicates: bool = True,
) -> Source:
    """Open a dataset for a tokenizer of input size `size`.

    Args:
        data: a folder, a ``.txt``/``.csv`` file list, a glob, or a demo split name (``demo-scenes``...).
        size: the tokenizer's image size.
        preprocess: named preprocess mode for file images (demo images are generated at `size`).
        limit: use at most this many images (demo: exactly this many; default `DEMO_DEFAULT_N`).
        subset_seed: pick a random subset of `limit` images with this seed instead of the first.
        follow_symlinks: read symlinks that leave the data root (see `discover`); recorded in
            `Source.info` only when True, so default run ids do not change.
        check_duplicates: look for files with the same bytes (one ``stat`` per file, a hash only
            where sizes collide) and warn about them.
    """
    if data.startswith("demo-"):
        n = limit or DEMO_DEFAULT_N
        ds = DemoDataset(data, n, size)
        return Source(ds, "demo", data, "generated", {"n": n, "seed": ds.seed, "size": size})
    max_decoded_bytes()  # a malformed limit in the environment fails here, once, not per image
    records = select(discover(data, follow_symlinks=follow_symlinks), limit, subset_seed)
    if not records:
        raise DataError(f"no images selected from {data}")
    ds = ImageDataset(records, preprocess, size)
    info: dict[str, Any] = {"n": len(records), "limit": limit, "subset_seed": subset_seed}
    if follow_symlinks:
        info["follow_symlinks"] = True
    source = Source(ds, "files", data, preprocess, info)
    _check_files(source, records, size, check_duplicates)
    source.warnings = [printable(w) for w in source.warnings]  # they quote file names: no control codes
    source.notes = [printable(n) for n in source.notes]
    for line in source.warnings:
        log.warning("%s", line)
    return source


def _check_files(source: Source, records: list[ImageRecord], size: int, check_duplicates: bool) -> None:
    """Fill the source's findings from the files alone (bytes and headers, no pixels): duplicates,
    non-RGB images, and the images ``center-crop`` zero-pads."""
    if check_duplicates:
        source.duplicates = find_duplicates(records)
        if source.duplicates:
            shown = ", ".join(f"{a} = {b}" for a, b in source.duplicates[:FIRST_SHOWN])
            more = ", ..." if len(source.duplicates) > FIRST_SHOWN else ""
            source.warnings.append(
                f"{len(source.duplicates)} of {len(records)} images duplicate an earlier file "
                f"byte for byte ({shown}{more}); both copies are counted"
            )
    scan = scan_headers(records, size)
    source.converted = scan.modes
    if scan.modes:
        source.notes.append(_converted_note(scan.modes, len(records)))
    if source.preprocess == "center-crop":
        source.padded = scan.padded
        if source.padded:
            shown = ", ".join(source.padded[:FIRST_SHOWN]) + (", ..." if len(source.padded) > FIRST_SHOWN else "")
            source.warnings.append(
                f"center-crop zero-pads {len(source.padded)} of {len(records)} images smaller than "
                f"{size} px ({shown}); use --preprocess resize-center-crop to resize them instead"
            )


def _converted_note(modes: dict[str, list[str]], n: int) -> str:
    """One summary line: how many images were not RGB, by mode, with the first ids and the conversion."""
    total = sum(len(ids) for ids in modes.values())
    parts = []
    for mode, ids in sorted(modes.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(ids[:FIRST_SHOWN]) + (", ..." if len(ids) > FIRST_SHOWN else "")
        parts.append(f"{len(ids)} {mode} ({CONVERSIONS.get(mode, 'converted by Pillow')}: {shown})")
    return f"{total} of {n} images are not RGB and were converted to RGB: {'; '.join(parts)}"
