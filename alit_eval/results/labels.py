"""Short human labels for figure titles and report tables: which checkpoint, which data, how many images.

Stdlib only: plots receive these strings as arguments (plots never compute), and the commands build
them from the run's config/meta.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Mapping


def checkpoint_label(name: str | None, path: str | None = None) -> str:
    """The name a reader knows a checkpoint by.

    A pretrained name (``alit_small.vqgan_quantized.in100``) is kept. A file called ``checkpoint.*``
    (``.../my_run/checkpoint.pt``) says nothing, so its parent folder's name is used instead.

    Args:
        name: the loader's name (a pretrained name, or the file's stem).
        path: the checkpoint file, when known.

    Returns:
        e.g. ``"my_run"`` for ``runs/my_run/checkpoint.pt``, else `name` (``"?"`` when unknown).

    Example:
        >>> checkpoint_label("checkpoint", "runs/alit_b32/checkpoint.pt")
        'alit_b32'
    """
    if path:
        p = PurePath(str(path))
        if p.stem.lower() == "checkpoint" or p.name.lower().startswith("checkpoint."):
            if p.parent.name:
                return p.parent.name
    return name or "?"


def checkpoint_of(record: Mapping[str, Any] | None) -> str:
    """`checkpoint_label` of a meta.json/config.json ``checkpoint`` entry (``{"name", "path", ...}``)."""
    record = record or {}
    return checkpoint_label(record.get("name"), record.get("path"))


def data_label(source: Any) -> str:
    """A data source as a short label: a demo split as it is, a folder or file by its last name."""
    text = str(source or "?")
    if text.startswith("demo-") or "/" not in text:
        return text
    return PurePath(text.rstrip("/")).name or text


def run_title(checkpoint: str, data: str, n: int | None, what: str = "") -> str:
    """A figure title naming checkpoint, data and number of images: ``"fid: demo on demo-scenes (n=100)"``."""
    head = f"{what}: " if what else ""
    count = f" (n={n})" if n is not None else ""
    return f"{head}{checkpoint} on {data}{count}"


def title_from_meta(meta: Mapping[str, Any] | None, config: Mapping[str, Any] | None = None, what: str = "") -> str:
    """`run_title` from a run's meta fields (checkpoint, dataset, n_images), falling back to its config."""
    meta, config = meta or {}, config or {}
    ck = meta.get("checkpoint") or config.get("checkpoint")
    data = (meta.get("dataset") or {}).get("source") or (config.get("data") or {}).get("source")
    return run_title(checkpoint_of(ck), data_label(data), meta.get("n_images"), what)
