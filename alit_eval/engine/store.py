"""Per-batch record shards under a run folder, so an interrupted sweep resumes exactly.

Each processed batch becomes one ``shards/<first index>.npz`` (written atomically): image indices and
ids, per-image metric arrays ``[n, n_budgets]``, Inception features per budget (and of the
originals), example reconstructions, decode failures, the identity of every source file of the batch
(``file_*``, see `alit_eval.engine.identity`), and the global RNG state after the batch (needed to
resume the ``official`` halting stream). Shards are read back one at a time in index order, so
results do not depend on where a run was interrupted and features never all sit in memory.

Beside each shard, ``<shard>.npz.sha256`` records the sha256 and size of its bytes when it was
written (``sha256sum`` format plus a ``#`` line); `ShardStore.damage` checks a shard against it, so
a truncated or overwritten shard is found, named and recomputed instead of breaking every rerun.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from alit_eval.results.atomic import writing

CHECKSUM_SUFFIX = ".sha256"

# Which row index a stored array is aligned with (its first axis), by name prefix; the rest of the
# per-image arrays follow "index". Used to remove single images from a shard.
_ALIGNED = (("failed_", "failed_index"), ("file_", "file_index"), ("example_", "example_index"))
_UNALIGNED = ("rng_state",)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class ShardStore:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder) / "shards"
        with writing(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
            for stale in self.folder.glob("*.tmp.npz"):  # a shard interrupted while being written
                stale.unlink(missing_ok=True)

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("[0-9]*.npz"), key=lambda p: int(p.stem.split(".")[0]))

    def write(self, shard_id: int, arrays: dict[str, np.ndarray]) -> Path:
        """Write one shard named by the first dataset index of its batch (atomic, fsynced), and its checksum."""
        path = self.folder / f"{shard_id:09d}.npz"
        tmp = self.folder / f"{shard_id:09d}.tmp.npz"
        with writing(path):
            try:
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays)
                    f.flush()
                    os.fsync(f.fileno())
                # The checksum goes down before the shard: a crash between the two leaves an old
                # shard that no longer matches (recomputed), never a new shard trusted unchecked.
                side = _checksum_path(path)
                side_tmp = side.with_name(f".{side.name}.tmp")
                side_tmp.write_text(f"{_digest(tmp)}  {path.name}\n# size={tmp.stat().st_size}\n")
                os.replace(side_tmp, side)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return path

    def iter(self, keys: Sequence[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Yield shards in index order with only `keys` (default: all) loaded."""
        for path in self.files():
            yield load_shard(path, keys)

    def done(self) -> set[int]:
        """Dataset indices already handled (processed or failed to decode)."""
        return {int(i) for s in self.iter(["index", "failed_index"]) for k in s for i in s[k]}

    def last_rng_state(self) -> np.ndarray | None:
        """The global RNG state saved after the last batch written, if any."""
        files = self.files()
        if not files:
            return None
        with np.load(files[-1], allow_pickle=False) as z:
            return z["rng_state"] if "rng_state" in z.files else None

    def concat(self, key: str) -> np.ndarray:
        """One small per-image array over all shards, in index order."""
        parts = [s[key] for s in self.iter([key]) if key in s]
        return np.concatenate(parts) if parts else np.zeros(0)

    # ---- integrity
    def damage(self, path: Path) -> str | None:
        """Why shard `path` cannot be trusted (checksum or size mismatch, unreadable), or None when sound.

        A shard without a checksum file (written before checksums existed, or the writer died between
        the two files) is read through completely instead: the zip CRC-32 of every array is checked.
        """
        recorded = _read_checksum(path)
        try:
            if recorded is not None:
                digest, size = recorded
                actual = path.stat().st_size
                if size is not None and actual != size:
                    return f"{actual} bytes instead of the {size} written"
                return None if _digest(path) == digest else "its sha256 differs from the one recorded when written"
            with np.load(path, allow_pickle=False) as z:
                for name in z.files:
                    z[name]
            return None
        except Exception as exc:  # any reading failure means damage (BadZipFile, ValueError, OSError, EOFError)
            return f"unreadable ({type(exc).__name__})"

    def remove(self, path: Path) -> None:
        """Delete one shard and its checksum file."""
        with writing(path):
            path.unlink(missing_ok=True)
            _checksum_path(path).unlink(missing_ok=True)

    def drop_positions(self, path: Path, positions: set[int]) -> None:
        """Remove the images at dataset `positions` from shard `path` (they are then recomputed).

        The rest is rewritten under the name of its smallest remaining position, so a recomputed
        batch (named by its own smallest position) can never take the same name; an emptied shard
        is deleted.
        """
        arrays = load_shard(path)
        index_of = {"index": arrays.get("index"), **{v: arrays.get(v) for _, v in _ALIGNED}}
        keep_mask = {k: (None if v is None else ~np.isin(v, list(positions))) for k, v in index_of.items()}
        kept: dict[str, np.ndarray] = {}
        for name, value in arrays.items():
            if name in _UNALIGNED:
                kept[name] = value
                continue
            ref = next((v for prefix, v in _ALIGNED if name.startswith(prefix)), "index")
            mask = keep_mask.get(ref)
            kept[name] = value[mask] if mask is not None and value.ndim and len(value) == len(mask) else value
        remaining = [int(i) for k in ("index", "failed_index") if k in kept for i in kept[k]]
        self.remove(path)
        if remaining:
            self.write(min(remaining), kept)


def load_shard(path: Path, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of one shard (only `keys` when given)."""
    with np.load(path, allow_pickle=False) as z:
        names = z.files if keys is None else [k for k in keys if k in z.files]
        return {k: z[k] for k in names}


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def _read_checksum(path: Path) -> tuple[str, int | None] | None:
    try:
        lines = _checksum_path(path).read_text().splitlines()
        digest = lines[0].split()[0].lower()
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    size = None
    for line in lines[1:]:
        for field in line.lstrip("#").split():
            if field.startswith("size="):
                try:
                    size = int(field[5:])
                except ValueError:
                    pass
    return digest, size
