"""What a resumed sweep verifies before reusing its shards: sound shards and unchanged images.

The run id hashes the config (data folder, image count, checkpoint sha256, ...), not the image
bytes, so a rerun after images were replaced under the same names would otherwise reuse old numbers.
Every shard therefore stores, for each dataset position of its batch, the identity of the source
file as it was when read: ``file_index`` (positions), ``file_size``, ``file_mtime_ns`` and
``file_sha256`` (hex sha256 of the bytes; taken *before* decoding, so a change during the run is
seen on the next resume). On resume, `verify_resume`:

1. drops shards that are damaged (`ShardStore.damage`: checksum recorded when written), naming them;
2. compares each recorded file with the file now at that position: same id, and size + mtime_ns as
   a cheap first check; if those differ, the bytes are hashed again and only a different sha256
   counts as a change (a ``touch`` alone recomputes nothing);
3. removes changed images from their shards so that exactly they are recomputed. With the
   ``official`` halting stream (one global RNG across batches) the first affected shard and every
   later one are dropped instead, as if the run had been interrupted there.

Shards of a file-backed dataset that carry no file identities (older versions) are recomputed:
what cannot be verified is never reused. Procedural demo datasets have no files and are not checked.
"""

from __future__ import annotations

import hashlib
import os
import stat
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch.utils.data import Dataset

from alit_eval.engine.store import ShardStore, load_shard
from alit_eval.printable import printable

NO_FILE = (-1, -1, "")  # identity of a position whose file could not be read (then it failed to decode too)


class ResumeWarning(UserWarning):
    """Stored results were found damaged or out of date and are being recomputed."""


def file_identity(path: str | Path) -> tuple[int, int, str]:
    """``(size, mtime_ns, sha256 hex)`` of a regular file, or `NO_FILE` when it cannot be read."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # never open a FIFO or device just to hash it
            return NO_FILE
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError:
        return NO_FILE
    return st.st_size, st.st_mtime_ns, h.hexdigest()


def file_backed(dataset: Any) -> bool:
    """True when `dataset` reads files (it has ``records`` with paths), i.e. its images can change."""
    return getattr(dataset, "records", None) is not None


class IdentifiedDataset(Dataset):
    """Wrap a file-backed dataset so each item also carries ``identity`` (`file_identity` of its file)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ident = file_identity(self.dataset.records[index].path)  # before decoding: see the module docstring
        return {**self.dataset[index], "identity": ident}


def identify(dataset: Any) -> Any:
    """`IdentifiedDataset` of a file-backed dataset; other datasets are returned as they are."""
    return IdentifiedDataset(dataset) if file_backed(dataset) else dataset


def identity_arrays(items: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The ``file_*`` shard arrays of a batch's items (empty when the items carry no identity)."""
    rows = [(it["index"], *it["identity"]) for it in items if "identity" in it]
    if not rows:
        return {}
    return {"file_index": np.asarray([r[0] for r in rows], dtype=np.int64),
            "file_size": np.asarray([r[1] for r in rows], dtype=np.int64),
            "file_mtime_ns": np.asarray([r[2] for r in rows], dtype=np.int64),
            "file_sha256": np.asarray([r[3] for r in rows], dtype="U64")}


_KEYS = ("index", "id", "failed_index", "failed_id", "file_index", "file_size", "file_mtime_ns", "file_sha256")


def verify_resume(store: ShardStore, dataset: Any, *, official_stream: bool = False) -> list[str]:
    """Drop or trim shards that are damaged or hold images that changed; return one line per finding.

    Args:
        store: the run's shards.
        dataset: the dataset the sweep runs on now (positions as in the shards).
        official_stream: the sweep uses the ``official`` halting stream: affected shards and all
            later ones are dropped instead of trimmed.

    Returns:
        Human-readable findings (also issued as `ResumeWarning`s); empty when everything is reused.
    """
    records = dataset.records if file_backed(dataset) else None
    findings: list[str] = []
    changed: dict[Path, set[int]] = {}
    drop: list[Path] = []
    for path in store.files():
        rel = f"{path.parent.name}/{path.name}"
        why = store.damage(path)
        if why is not None:
            findings.append(f"shard {path} is damaged ({why}); recomputing its images")
            drop.append(path)
            continue
        if records is None:
            continue
        shard = load_shard(path, _KEYS)
        if "file_index" not in shard:
            findings.append(f"shard {rel} holds no image hashes (written by an older alit-eval); recomputing it")
            drop.append(path)
            continue
        bad = _changed_positions(shard, records)
        if bad:
            changed[path] = set(bad)
    if changed:
        names = [printable(records[i].id) if i < len(records) else f"#{i}" for s in changed.values() for i in sorted(s)]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        findings.append(f"{len(names)} image(s) changed since they were computed ({shown}); recomputing them")
    if official_stream and (drop or changed):
        first = min(int(p.stem) for p in [*drop, *changed])
        drop = [p for p in store.files() if int(p.stem) >= first]
        changed = {}
    for path in drop:
        store.remove(path)
    for path, positions in changed.items():
        store.drop_positions(path, positions)
    for line in findings:
        warnings.warn(line, ResumeWarning, stacklevel=2)
    return findings


def _changed_positions(shard: dict[str, np.ndarray], records: Sequence[Any]) -> list[int]:
    """Positions of `shard` whose file is no longer the one recorded (or whose id changed)."""
    ids = dict(zip(shard["index"].tolist(), shard["id"].tolist()))
    ids.update(zip(shard["failed_index"].tolist(), shard["failed_id"].tolist()))
    recorded = zip(shard["file_index"].tolist(), shard["file_size"].tolist(), shard["file_mtime_ns"].tolist(),
                   shard["file_sha256"].tolist())
    bad = set(p for p in ids if p >= len(records) or records[p].id != ids[p])
    seen = set()
    for pos, size, mtime_ns, digest in recorded:
        seen.add(pos)
        if pos >= len(records) or pos in bad:
            bad.add(pos)
            continue
        try:
            st = os.stat(records[pos].path)
            cheap_same = (st.st_size, st.st_mtime_ns) == (size, mtime_ns)
        except OSError:
            cheap_same = False
        if not cheap_same and file_identity(records[pos].path)[2] != digest:
            bad.add(pos)
    bad |= set(ids) - seen  # a position without a recorded identity cannot be verified
    return sorted(bad)
