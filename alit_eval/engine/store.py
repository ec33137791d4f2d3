"""Per-batch record shards under a run folder, so an interrupted sweep resumes exactly.

Each processed batch becomes one ``shards/<first index>.npz`` (written atomically): image indices and
ids, per-image metric arrays ``[n, n_budgets]``, Inception features per budget (and of the
originals), example reconstructions, decode failures, and the global RNG state after the batch
(needed to resume the ``official`` halting stream). Shards are read back one at a time in index
order, so results do not depend on where a run was interrupted and features never all sit in memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np


class ShardStore:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder) / "shards"
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob("*.tmp.npz"):  # a shard interrupted while being written
            stale.unlink(missing_ok=True)

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("[0-9]*.npz"), key=lambda p: int(p.stem.split(".")[0]))

    def write(self, shard_id: int, arrays: dict[str, np.ndarray]) -> Path:
        """Write one shard named by the first dataset index of its batch (atomic, fsynced)."""
        path = self.folder / f"{shard_id:09d}.npz"
        tmp = self.folder / f"{shard_id:09d}.tmp.npz"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def iter(self, keys: Sequence[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Yield shards in index order with only `keys` (default: all) loaded."""
        for path in self.files():
            with np.load(path, allow_pickle=False) as z:
                names = z.files if keys is None else [k for k in keys if k in z.files]
                yield {k: z[k] for k in names}

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
