"""Run folders: create, resume or replace ``<results_dir>/<command>/<run_id>/``, its lock and completion.

A run lives in ``<results_dir>/<command>/<run_id>/``. Its ``config.json`` is written when the run
starts; the default run id is a short hash of that config, so rerunning the same command with the
same options reopens (and resumes) the same folder, while a different config is refused unless
``overwrite=True``. A ``.lock`` file (held with ``fcntl.flock``; holds pid and host) keeps two
processes out of one folder. ``meta.json`` (`alit_eval.results.provenance.build_meta`) is written
LAST by `RunDir.finish`: a folder without it is incomplete. Every file goes through the atomic
writers of `alit_eval.results.atomic`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from alit_eval.errors import AlitEvalError
from alit_eval.results.atomic import to_jsonable, write_csv, write_json, write_parquet, writing
from alit_eval.results.provenance import now_iso, build_meta

if TYPE_CHECKING:
    import pandas as pd

CONFIG_FILE = "config.json"
META_FILE = "meta.json"
LOCK_FILE = ".lock"
METRICS_FILE = "metrics.csv"
PER_IMAGE_FILE = "per_image.parquet"
FIGURES_DIR = "figures"


def config_hash(config: Mapping[str, Any], length: int = 10) -> str:
    """Short sha256 of the canonical JSON of `config` (sorted keys): the default run id."""
    canonical = json.dumps(to_jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:length]


# ---- locking
class _Lock:
    """``folder/.lock`` held with ``fcntl.flock``: the kernel, not a pid check, says whether it is held.

    A process that dies releases its flock, so a stale lock is one whose file exists but whose flock
    is free; taking it over IS acquiring the flock, which only one process can win (the old
    read-pid-then-unlink takeover let two processes both take the same stale lock). The file holds
    the holder's pid and host for the "in use by" message. On release the file is unlinked while
    still locked; an acquirer checks that the inode it locked is still the one at the path.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            same = _same_file(self.fd, self.path)
        except OSError:
            same = False
        if same:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)  # closing drops the flock
        self.fd = -1


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and negatives address process groups, not a process
        return False
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    except (OverflowError, ValueError):  # not a possible pid
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    a, b = os.fstat(fd), os.stat(path)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _acquire_lock(folder: Path) -> _Lock:
    """Lock ``folder/.lock`` (see `_Lock`), taking over a stale one atomically."""
    import fcntl

    lock = folder / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": now_iso()}
    for _ in range(10):
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held by a live process
            os.close(fd)
            holder = _read_lock(lock)
            who = f"pid {holder['pid']} on {holder['host']}" if holder else "another process"
            raise AlitEvalError(
                f"{folder} is in use by {who} (lock file {lock}); wait for that run to finish, "
                "or delete the lock file if it is gone"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise AlitEvalError(f"cannot lock {lock} ({exc.strerror}): the file system does not support "
                                "file locks; use a --results-dir on a local disk") from None
        try:
            same = _same_file(fd, lock)
        except FileNotFoundError:
            same = False
        if not same:  # released (unlinked) between our open and our flock: lock the new file
            os.close(fd)
            continue
        holder = _read_lock(lock)
        # A pid can only be checked on its own host, and a flock may not reach across hosts on a
        # network file system: a lock written on another host is never taken over. A live local pid
        # without the flock is a writer of an older alit-eval (O_EXCL locks): left alone too.
        if holder is not None and (holder["host"] != socket.gethostname()
                                   or (holder["pid"] != os.getpid() and _pid_alive(holder["pid"]))):
            os.close(fd)
            raise AlitEvalError(
                f"{folder} is in use by pid {holder['pid']} on {holder['host']} (lock file {lock}); wait "
                "for that run to finish, or delete the lock file if it is gone"
            )
        data = json.dumps(me).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return _Lock(lock, fd)
    raise AlitEvalError(f"could not take the lock {lock}; other processes keep taking it, retry")


def _read_lock(lock: Path) -> dict | None:
    try:
        data = json.loads(lock.read_text())
        return {"pid": int(data["pid"]), "host": str(data["host"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---- run folders
@dataclass
class RunDir:
    """An open run folder ``<results_dir>/<command>/<run_id>``, locked until `release`/`finish`.

    ``resumed`` says the folder already held a run with this config (its files may be reused);
    ``previous_meta`` is the ``meta.json`` of an earlier completed run; it stays on disk while the
    run is reopened (the lock says a run is in progress) until `finish` replaces it atomically.
    """

    path: Path
    command: str
    run_id: str
    config: dict  # as stored in config.json
    resumed: bool = False
    previous_meta: dict | None = None
    started_at: float = field(default_factory=time.time)  # POSIX time the run was opened
    meta: dict | None = None  # what `finish` wrote to meta.json (None until then)
    _lock: _Lock | None = None

    @property
    def figures(self) -> Path:
        """The ``figures/`` folder (created on first access)."""
        folder = self.path / FIGURES_DIR
        folder.mkdir(exist_ok=True)
        return folder

    @property
    def complete(self) -> bool:
        """True once ``meta.json`` exists."""
        return (self.path / META_FILE).is_file()

    def file(self, name: str) -> Path:
        """Path of a file inside the run folder."""
        return self.path / name

    def write_metrics(self, df: "pd.DataFrame") -> Path:
        """Validate `df` against the metrics schema and write ``metrics.csv``."""
        from alit_eval.results.schema import validate

        validate(df, "metrics")
        return write_csv(df, self.path / METRICS_FILE)

    def write_per_image(self, df: "pd.DataFrame") -> Path:
        """Validate `df` against the per-image schema and write ``per_image.parquet``."""
        from alit_eval.results.schema import validate

        validate(df, "per_image")
        return write_parquet(df, self.path / PER_IMAGE_FILE)

    def finish(self, *, seed: int | None, device: str | None, extra: Mapping[str, Any] | None = None) -> dict:
        """Write ``meta.json`` (the completion mark, so always last), release the lock, return meta."""
        meta = build_meta(self.config, seed=seed, device=device, extra=extra, started_at=self.started_at)
        meta = {"command": self.command, "run_id": self.run_id, **meta}
        write_json(meta, self.path / META_FILE)
        self.meta = meta
        self.release()
        return meta

    def release(self) -> None:
        """Remove the lock file (idempotent)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def open_run(
    results_dir: str | Path,
    command: str,
    *,
    run_id: str | None = None,
    config: Mapping[str, Any],
    overwrite: bool = False,
) -> RunDir:
    """Open (create, resume or replace) the run folder ``<results_dir>/<command>/<run_id>``.

    Args:
        results_dir: root of all results (``--results-dir``, default ``results``).
        command: command name, the first folder level.
        run_id: folder name; default: `config_hash` of `config`, so the same config resumes.
        config: everything that determines the outputs (JSON-safe after `to_jsonable`).
        overwrite: clear an existing folder instead of refusing a different config.

    Returns:
        A locked `RunDir`; call `RunDir.finish` at the end, or `release` to stop without finishing.

    Raises:
        AlitEvalError: the folder is locked by a live process, or holds a different config (or
            unknown files) and `overwrite` is False.
    """
    stored_config = to_jsonable(dict(config))
    rid = run_id or config_hash(stored_config)
    if not rid or any(ch in rid for ch in "/\\") or rid in {".", ".."}:
        raise AlitEvalError(f"invalid run id {rid!r}: use a plain folder name")
    folder = Path(results_dir) / command / rid
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        lock = _acquire_lock(folder)
    try:
        with writing(folder):
            resumed, previous = _prepare(folder, stored_config, overwrite)
    except BaseException:
        lock.release()
        raise
    return RunDir(folder, command, rid, stored_config, resumed=resumed, previous_meta=previous, _lock=lock)


def _prepare(folder: Path, config: dict, overwrite: bool) -> tuple[bool, dict | None]:
    """Decide between new, resumed and replaced; leave the folder ready. Returns (resumed, meta)."""
    config_path = folder / CONFIG_FILE
    others = [p for p in folder.iterdir() if p.name != LOCK_FILE]
    if others and not overwrite:
        if not config_path.is_file():
            raise AlitEvalError(
                f"{folder} holds files but no {CONFIG_FILE}, so it is not an alit-eval run; "
                "choose another --run-id or pass --overwrite to clear it"
            )
        stored = read_json(config_path, what="the run's config")
        if stored != config:
            changed = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
            raise AlitEvalError(
                f"{folder} holds a run with a different config (differs in: {', '.join(changed)}); "
                "pass --overwrite to replace it, or choose another --run-id"
            )
        previous = None
        meta_path = folder / META_FILE
        if meta_path.is_file():
            # Kept until finish() replaces it atomically: removing the completion mark first left a
            # folder that a failed rerun could never complete again. Damaged: it is simply rewritten.
            try:
                previous = read_json(meta_path, what="the run's completion record")
            except AlitEvalError as exc:
                warnings.warn(f"{exc}; it will be rewritten when this run finishes", stacklevel=3)
        return True, previous
    for p in others:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    write_json(config, config_path)
    return False, None


def read_json(path: Path, *, what: str = "a JSON file") -> dict:
    """Read a JSON object written by alit-eval; a damaged or foreign file is one `AlitEvalError` line."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise AlitEvalError(f"cannot read {path} ({exc.strerror or exc}); check the file's permissions") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise AlitEvalError(f"{path} ({what}) is not valid JSON ({type(exc).__name__}); the file is damaged: "
                            "delete the run folder or rerun with --overwrite") from None
    if not isinstance(data, dict):
        raise AlitEvalError(f"{path} ({what}) holds a JSON {type(data).__name__}, not an object; the file is "
                            "damaged: delete the run folder or rerun with --overwrite")
    return data
