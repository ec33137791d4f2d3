"""Atomic file writes: a reader never sees half a file, and a full or read-only disk is one error line.

Every write goes to a temporary file in the target's folder and is moved into place with
`os.replace`. `to_jsonable` makes config and meta values JSON-safe (NaN becomes null).
"""

from __future__ import annotations

import errno
import json
import math
import os
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from alit_eval.errors import AlitEvalError

if TYPE_CHECKING:
    import pandas as pd


# ---- environment errors (read-only folder, full disk) as one line
# errno values that mean "the place you asked me to write cannot take it", not a bug.
WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                          errno.EEXIST, errno.EFBIG, errno.ENAMETOOLONG})


def write_error(exc: OSError, path: str | Path | None = None) -> AlitEvalError:
    """Turn an OSError met while writing `path` into one actionable line (with free space when full)."""
    where = Path(path) if path is not None else Path(exc.filename) if exc.filename else Path.cwd()
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        free = "unknown"
        probe: Path | None = where
        while probe is not None:  # the file itself may not exist: ask its nearest existing folder
            try:
                free = f"{shutil.disk_usage(probe).free / 2**20:.1f} MiB"
                break
            except OSError:
                probe = probe.parent if probe.parent != probe else None
        return AlitEvalError(f"cannot write {where} ({reason}; {free} free there); free some space or choose "
                             "another --results-dir")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return AlitEvalError(f"cannot write {where} ({reason}); make the folder writable or choose another "
                             "--results-dir")
    return AlitEvalError(f"cannot write {where} ({reason}); choose another --results-dir")


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Re-raise the environment's OSErrors (`WRITE_ERRNOS`) inside the block as `write_error` lines."""
    try:
        yield
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise write_error(exc, path) from exc
        raise


# ---- atomic writers
@contextmanager
def _atomic(path: str | Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temp file beside `path`; on success move it over `path`, on error remove it."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not tempfile.mkstemp: its 0600 mode would stick to the final file; 0666 lets the umask decide.
        tmp = str(path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        try:
            with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_bytes(data: bytes, path: str | Path) -> Path:
    """Write `data` to `path` atomically; return the path."""
    with _atomic(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_json(obj: Any, path: str | Path) -> Path:
    """Write `obj` (made JSON-safe by `to_jsonable`) as indented UTF-8 JSON, atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return write_bytes(text.encode("utf-8"), path)


def write_csv(df: "pd.DataFrame", path: str | Path) -> Path:
    """Write `df` as CSV without the index, atomically (missing values become empty fields)."""
    with _atomic(path, "w") as f:
        df.to_csv(f, index=False, lineterminator="\n")
    return Path(path)


def write_parquet(df: "pd.DataFrame", path: str | Path) -> Path:
    """Write `df` as parquet (pyarrow) without the index, atomically."""
    with _atomic(path, "wb") as f:
        df.to_parquet(f, index=False, engine="pyarrow")
    return Path(path)


def to_jsonable(obj: Any) -> Any:
    """Convert `obj` into plain JSON types.

    Handles dicts, lists, tuples, sets, dataclasses, Enums, Paths, datetimes, numpy/torch scalars
    and arrays (anything with ``tolist``), and non-finite floats (become None, since JSON has no NaN).
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v) for v in obj), key=repr)
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return to_jsonable(obj.item())
    raise TypeError(f"cannot store a {type(obj).__name__} in JSON: {obj!r}")
