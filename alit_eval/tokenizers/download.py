"""Downloading a pretrained checkpoint into the cache, and checking a cached one's digest.

Dropbox URLs are streamed to a temp file, hashed while reading and renamed when complete; Hugging
Face files go through ``huggingface_hub.hf_hub_download`` into a staging folder, then are hashed and
moved into the same cache layout (``<cache>/checkpoints/<train_set>/<filename>``). A file that
cannot be fetched is an `OfflineError` naming the file, the exact path to put it at and where to
fetch it. Stdlib only at import time.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import shutil
import urllib.request
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from alit_eval.errors import CheckpointError, OfflineError
from alit_eval.paths import sha256_file
from alit_eval.tokenizers.digests import ChecksumWarning, _read_sidecar, _verified_sidecar, _write_sidecar
from alit_eval.tokenizers.pretrained import PretrainedEntry
from alit_eval.version import __version__

_CHUNK = 1 << 20
_TIMEOUT_S = 60


def _missing(entry: PretrainedEntry, dest: Path, why: str) -> OfflineError:
    where = entry.url or entry.source
    return OfflineError(
        f"{entry.name} is not in the cache and {why}: download {entry.remote_filename} from {where} "
        f"and put it at {dest}"
    )


def _verify_cached(path: Path, entry: PretrainedEntry) -> None:
    """Check a cached file's digest, hashing unless its sidecar matches the file's size and mtime."""
    recorded = _read_sidecar(path)
    verified = _verified_sidecar(path)
    if verified is not None and (entry.sha256 is None or verified == entry.sha256.lower()):
        return
    digest = sha256_file(path)
    if entry.sha256 and digest != entry.sha256.lower():
        raise CheckpointError(
            f"{path} has sha256 {digest[:16]}..., expected {entry.sha256[:16]}... for {entry.name}; "
            "delete it to download it again, or pass the file by path to use it as it is"
        )
    if entry.sha256 is None and recorded and digest != recorded:
        warnings.warn(f"{path} changed since its sha256 was recorded ({recorded[:16]}... -> "
                      f"{digest[:16]}...); results will record the new digest", ChecksumWarning, stacklevel=3)
    _write_sidecar(path, digest)


def _download(entry: PretrainedEntry, dest: Path, *, progress: bool) -> None:
    """Stream `entry.url` to `dest` atomically, verifying or recording its sha256."""
    assert entry.url is not None
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its 0600 mode would stick to the cached file; 0666 lets the umask decide.
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.part"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                received, total, digest = _fetch(entry.url, out, entry.filename, progress)
            except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError
                reason = getattr(exc, "reason", None) or exc
                raise _missing(entry, dest, f"the download failed ({type(exc).__name__}: {reason})") from exc
        if total is not None and received != total:
            raise _missing(entry, dest, f"the download was cut short ({received} of {total} bytes)")
        _accept_download(entry, tmp, dest, digest, entry.filename, "the file behind the URL")
    finally:
        tmp.unlink(missing_ok=True)


def _accept_download(entry: PretrainedEntry, got: Path, dest: Path, digest: str, label: str, origin: str) -> None:
    """Check a finished download against the known sha256 (else discard it), warn when it differs from
    the digest recorded before, then move it into the cache with its sidecar (both download paths)."""
    if entry.sha256 and digest != entry.sha256.lower():
        raise CheckpointError(
            f"downloaded {label} has sha256 {digest[:16]}..., expected "
            f"{entry.sha256[:16]}...; the file was discarded (rerun, or fetch it from {entry.source})"
        )
    previous = _read_sidecar(dest)
    if entry.sha256 is None and previous and previous != digest:
        warnings.warn(f"{label} downloaded with sha256 {digest[:16]}..., but {previous[:16]}... "
                      f"was recorded before; {origin} changed", ChecksumWarning, stacklevel=4)
    os.replace(got, dest)
    _write_sidecar(dest, digest)


def _download_hf(entry: PretrainedEntry, dest: Path) -> None:
    """Fetch a Hugging Face file with ``huggingface_hub`` into a staging folder, then hash it and move
    it to `dest` (the same cache layout, sha256 check and sidecar as `_download`)."""
    import huggingface_hub

    assert entry.hf_repo is not None
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A private staging folder next to the cache file: the rename stays on one file system, and
    # huggingface_hub's own metadata (written inside local_dir) is removed with it.
    staging = dest.parent / f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.hf"
    try:
        try:
            got = Path(huggingface_hub.hf_hub_download(
                repo_id=entry.hf_repo, filename=entry.remote_filename, revision=entry.hf_revision,
                local_dir=staging,
            ))
        except Exception as exc:  # HTTP, connection and offline errors differ across huggingface_hub versions
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            raise _missing(entry, dest, f"the download failed ({type(exc).__name__}: {first})") from exc
        _accept_download(entry, got, dest, sha256_file(got), entry.remote_filename, "the file in the repo")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch(url: str, out: BinaryIO, label: str, progress: bool) -> tuple[int, int | None, str]:
    """Copy the body at `url` into `out`; return (bytes received, Content-Length or None, sha256)."""
    request = urllib.request.Request(url, headers={"User-Agent": f"alit-eval/{__version__}"})
    digest, received = hashlib.sha256(), 0
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with _progress(f"downloading {label}", total, enabled=progress) as advance:
            while chunk := response.read(_CHUNK):
                # A share link that stopped working answers with an HTML page, not the file.
                if received == 0 and chunk.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
                    raise ValueError("the server sent a web page instead of the file")
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
                advance(received)
    return received, total, digest.hexdigest()


@contextmanager
def _progress(description: str, total: int | None, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich download bar on stderr; yields ``advance(bytes_done)``."""
    if not enabled:
        yield lambda done: None
        return
    from rich import progress as rp
    from rich.console import Console

    columns = (rp.BarColumn(), rp.DownloadColumn(), rp.TransferSpeedColumn(), rp.TimeRemainingColumn())
    with rp.Progress("{task.description}", *columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)
