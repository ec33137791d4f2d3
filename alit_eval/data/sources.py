"""Resolve a ``--data`` argument (folder, file list, glob or demo split) to a torch Dataset.

The engine calls `open_source` and never cares which kind it got: every dataset yields the same
item dicts as `ImageDataset` (index, id, label, uint8 image ``[3,S,S]`` or None plus an error).
Demo splits are generated at the tokenizer's size and carry their ground truth as extra columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from alit_eval.data import demo
from alit_eval.data.datasets import ImageDataset, discover, select
from alit_eval.errors import DataError

DEMO_DEFAULT_N = 100


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
    """A resolved dataset: the Dataset, its kind and what to record about it."""

    dataset: Dataset
    kind: str
    name: str
    preprocess: str
    info: dict[str, Any] = field(default_factory=dict)


def open_source(
    data: str,
    *,
    size: int,
    preprocess: str,
    limit: int | None = None,
    subset_seed: int | None = None,
) -> Source:
    """Open a dataset for a tokenizer of input size `size`.

    Args:
        data: a folder, a ``.txt``/``.csv`` file list, a glob, or a demo split name (``demo-scenes``...).
        size: the tokenizer's image size.
        preprocess: named preprocess mode for file images (demo images are generated at `size`).
        limit: use at most this many images (demo: exactly this many; default `DEMO_DEFAULT_N`).
        subset_seed: pick a random subset of `limit` images with this seed instead of the first.
    """
    if data.startswith("demo-"):
        n = limit or DEMO_DEFAULT_N
        ds = DemoDataset(data, n, size)
        return Source(ds, "demo", data, "generated", {"n": n, "seed": ds.seed, "size": size})
    records = select(discover(data), limit, subset_seed)
    if not records:
        raise DataError(f"no images selected from {data}")
    ds = ImageDataset(records, preprocess, size)
    return Source(ds, "files", data, preprocess, {"n": len(records), "limit": limit, "subset_seed": subset_seed})
