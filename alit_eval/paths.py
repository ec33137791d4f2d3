"""Where alit-eval keeps files on disk, and whether it may use the network.

Caches live under the user's cache directory, never in site-packages or /tmp (STYLE.md §5):
``$ALIT_EVAL_CACHE`` when set, else ``~/.cache/alit-eval``. Results go to ``results/`` relative to
the working directory unless ``--results-dir`` says otherwise. Stdlib only: the CLI imports this at
startup.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_ENV = "ALIT_EVAL_CACHE"
OFFLINE_ENV = "ALIT_EVAL_OFFLINE"
# Honoured too, so one switch works for Hugging Face downloads and ours.
HF_OFFLINE_ENV = "HF_HUB_OFFLINE"

DEFAULT_RESULTS_DIR = Path("results")

_TRUE = {"1", "true", "yes", "on"}


def cache_dir() -> Path:
    """Return the cache root: ``$ALIT_EVAL_CACHE`` if set and non-empty, else ``~/.cache/alit-eval``.

    The folder is not created here; writers create what they need.
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "alit-eval"


def checkpoints_dir(root: Path | None = None) -> Path:
    """Return the folder that holds downloaded checkpoints: ``<cache>/checkpoints``."""
    return (root if root is not None else cache_dir()) / "checkpoints"


def env_offline() -> bool:
    """True when ``ALIT_EVAL_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to a true value (1/true/yes/on)."""
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE for name in (OFFLINE_ENV, HF_OFFLINE_ENV)
    )


def portable(path: str | Path) -> str:
    """A path as recorded in ``meta.json``: package files relative to the package, files under the
    home folder as ``~/...``, so results copied to another machine (or committed) name no local
    folders; other paths are kept as they are."""
    p = Path(path).expanduser()
    try:
        p = p.resolve()
    except OSError:
        return str(path)
    pkg = Path(__file__).resolve().parent
    for root, label in ((pkg, "alit_eval"), (Path.home().resolve(), "~")):
        try:
            return str(Path(label) / p.relative_to(root))
        except ValueError:
            continue
    return str(p)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Lowercase hex sha256 of a file, read in chunks (the one hash helper of the project)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
