"""sha256 digests of checkpoint files and their ``<file>.sha256`` sidecars.

A sidecar (``sha256sum`` format plus a ``# size= mtime_ns=`` line) records a file's digest after it
was downloaded or first verified, so the file is not hashed again while it keeps that size and
mtime; `checkpoint_sha256` is the digest recorded with results. Stdlib only.
"""

from __future__ import annotations

import os
from pathlib import Path

from alit_eval.paths import sha256_file


class ChecksumWarning(UserWarning):
    """A file whose sha256 was recorded earlier now hashes differently."""


def sidecar_path(path: Path) -> Path:
    """The ``<file>.sha256`` file that records a checkpoint's digest (``sha256sum`` format)."""
    return path.with_name(path.name + ".sha256")


def _read_sidecar(path: Path) -> str | None:
    """The digest a sidecar *claims* (unverified: for display only, never as the file's identity)."""
    return _read_sidecar_record(path)[0]


def _read_sidecar_record(path: Path) -> tuple[str | None, int | None, int | None]:
    """(digest, size, mtime_ns) recorded in the sidecar; size/mtime are None in sidecars without them."""
    try:
        lines = sidecar_path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None, None, None
    first = lines[0].split() if lines else []
    digest = first[0].lower() if first else None
    if digest is not None and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        return None, None, None
    fields = dict(f.split("=", 1) for line in lines[1:] if line.startswith("#") for f in line[1:].split() if "=" in f)
    try:
        return digest, int(fields["size"]), int(fields["mtime_ns"])
    except (KeyError, ValueError):
        return digest, None, None


def _write_sidecar(path: Path, digest: str) -> None:
    """Record `digest` with the file's size and mtime_ns; the ``#`` line is ignored by ``sha256sum -c``."""
    st = path.stat()
    side = sidecar_path(path)
    tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{digest}  {path.name}\n# size={st.st_size} mtime_ns={st.st_mtime_ns}\n")
        os.replace(tmp, side)
    except OSError:  # a read-only folder: the digest is simply recomputed next time
        tmp.unlink(missing_ok=True)


def _verified_sidecar(path: Path) -> str | None:
    """The recorded digest if it still describes `path` (same size and mtime_ns as recorded), else None.

    A sidecar is a claim, not an identity: one without size/mtime (older format, or hand-written),
    or whose file changed since, is never trusted; the caller re-hashes the file.
    """
    digest, size, mtime_ns = _read_sidecar_record(path)
    if digest is None or size is None:
        return None
    st = path.stat()
    return digest if (st.st_size, st.st_mtime_ns) == (size, mtime_ns) else None


def checkpoint_sha256(path: str | Path) -> str:
    """Lowercase hex sha256 of a checkpoint file (for ``meta.json`` and the run id).

    A sidecar's digest is reused only while the file keeps the size and mtime_ns recorded with it;
    otherwise the file is hashed again (a swapped file with an old digest beside it gets its true hash).
    """
    path = Path(path)
    return _verified_sidecar(path) or sha256_file(path)
