"""Reading run folders that may be damaged or hostile: tables, JSON and figures.

`report` and ``--from-run`` read folders the user did not necessarily write. A file that cannot be
read as what it should be (binary CSV, garbage parquet, missing or mistyped columns, invalid JSON)
becomes one `AlitEvalError` line naming the file and what to do, never a traceback; a figure is
embedded only when it is a regular file inside its run folder whose first bytes are an image's
(a symlink ``figures/zz.png -> ~/secret.txt`` must not end up base64-encoded in a report).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alit_eval.errors import AlitEvalError
from alit_eval.results.rundir import read_json

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["read_json", "read_table", "safe_figures", "is_image_file"]

# Leading bytes of the figure formats alit-eval writes (PNG, PDF) or a user may add (JPEG, SVG).
IMAGE_MAGIC = {".png": (b"\x89PNG\r\n\x1a\n",), ".jpg": (b"\xff\xd8\xff",), ".jpeg": (b"\xff\xd8\xff",),
               ".pdf": (b"%PDF-",), ".svg": (b"<?xml", b"<svg")}


def _damaged(path: Path, why: str) -> AlitEvalError:
    return AlitEvalError(f"{path} is damaged or not an alit-eval file ({why}); rerun the command that wrote it, "
                         "or leave that run folder out")


def read_table(path: Path, kind: str | None = None, **read_csv: Any) -> "pd.DataFrame":
    """Read a CSV or parquet table of a run folder; with `kind` (``metrics``/``per_image``) check its schema.

    Raises:
        AlitEvalError: unreadable, not a table, or (with `kind`) missing/mistyped columns; the message
            names the file.
    """
    import pandas as pd

    from alit_eval.results.schema import SchemaError, validate

    path = Path(path)
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, **read_csv)
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise AlitEvalError(f"cannot read {path} ({exc.strerror}); check that the file exists and is "
                                "readable") from None
        raise _damaged(path, f"{type(exc).__name__}: {_short(exc)}") from None
    except Exception as exc:  # pandas/pyarrow raise many types for garbage (ParserError, ArrowInvalid, ...)
        raise _damaged(path, f"{type(exc).__name__}: {_short(exc)}") from None
    if kind is not None:
        try:
            validate(df, kind)
        except SchemaError as exc:
            raise _damaged(path, _short(exc)) from None
    return df


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_image_file(path: Path, root: Path) -> bool:
    """True when `path` is a regular file whose real location is inside `root` and whose leading
    bytes match its extension's image format (`IMAGE_MAGIC`)."""
    try:
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(Path(os.path.realpath(root))):
            return False
        st = os.stat(real)
        if not stat.S_ISREG(st.st_mode):  # never open a FIFO or device
            return False
        magics = IMAGE_MAGIC.get(path.suffix.lower())
        if magics is None:
            return False
        with open(real, "rb") as f:
            head = f.read(64).lstrip() if path.suffix.lower() == ".svg" else f.read(16)
    except OSError:
        return False
    return any(head.startswith(m) for m in magics)


def safe_figures(paths: list[Path], root: Path) -> tuple[list[Path], list[Path]]:
    """Split `paths` into figures that may be embedded and the refused rest (see `is_image_file`)."""
    ok, refused = [], []
    for p in paths:
        (ok if is_image_file(p, root) else refused).append(p)
    return ok, refused
