"""From a ``--ckpt`` value to a loaded tokenizer: resolve a pretrained name or path, then load it.

`resolve_checkpoint` turns a name, path or `PretrainedEntry` into a local file: an existing local
path > the cache (``<cache>/checkpoints/<train_set>/<filename>``) > download (`download.py`;
skipped offline, where the error names the file, the exact path to put it at and where to fetch
it). `load_pretrained` loads the file through the family registry and returns provenance for
``meta.json``; `local_status` says, without hashing or downloading, whether a file is present
(``alit-eval models``). Stdlib only at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alit_eval.errors import CheckpointError
from alit_eval.paths import cache_dir as default_cache_dir
from alit_eval.paths import env_offline
from alit_eval.tokenizers.digests import _read_sidecar, checkpoint_sha256
from alit_eval.tokenizers.download import _download, _download_hf, _missing, _verify_cached
from alit_eval.tokenizers.pretrained import PRETRAINED, PretrainedEntry


@dataclass(frozen=True)
class LocalStatus:
    """Whether an entry's file is present locally, for ``alit-eval models``."""

    state: str  # "bundled", "not yet bundled", "cached" or "not cached"
    path: Path  # where the file is, or where it would be put
    sha256: str | None  # the known digest, or the one recorded at first use


def local_status(entry: PretrainedEntry, cache_dir: Path | None = None) -> LocalStatus:
    """Say whether `entry`'s file is present locally, without hashing or downloading anything."""
    if entry.bundled:
        path = entry.cache_path()
        state = "bundled" if path.is_file() else "not yet bundled"
        return LocalStatus(state, path, entry.sha256 or (_read_sidecar(path) if path.is_file() else None))
    found = _find_cached(entry, cache_dir)
    if found is None:
        return LocalStatus("not cached", entry.cache_path(cache_dir), entry.sha256)
    return LocalStatus("cached", found, entry.sha256 or _read_sidecar(found))


def _find_cached(entry: PretrainedEntry, cache_dir: Path | None) -> Path | None:
    folder = entry.cache_path(cache_dir).parent
    for name in (entry.filename, *entry.alt_filenames):
        if (folder / name).is_file():
            return folder / name
    return None


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.endswith((".pth", ".pt", ".ckpt", ".safetensors", ".bin"))


def _entry_for(name: str) -> PretrainedEntry:
    """Look up a pretrained name, with errors that help for near-misses and official file names."""
    if name in PRETRAINED:
        return PRETRAINED.get(name)
    entries = [entry for _, entry in PRETRAINED.items()]
    owners = [e.name for e in entries if Path(name).name in (e.filename, e.remote_filename, *e.alt_filenames)]
    if owners:
        raise CheckpointError(
            f"file not found: {name}; it is the official file of {' or '.join(owners)}: pass that "
            "name to use the cache (or download), or the path of your copy"
        )
    if _looks_like_path(name):
        raise CheckpointError(
            f"checkpoint file not found: {name} (and it is not a pretrained name; see `alit-eval models`)"
        )
    if name.startswith("alit_tiny"):
        raise CheckpointError(
            f"alit_tiny was never released by the ALIT authors; pick one of {', '.join(PRETRAINED.names())}"
        )
    # Names are long, so difflib misses partial ones like "alit_small": suggest containing names.
    partial = [e.name for e in entries if name and name in e.name]
    if partial:
        raise CheckpointError(
            f"unknown pretrained checkpoint {name!r}. Did you mean {', '.join(map(repr, partial))}?"
        )
    return PRETRAINED.get(name)


def _local_file(text: str) -> Path | None:
    """The checkpoint file `text` names on this machine (a file, or a Hugging Face model folder), else None."""
    local = Path(text).expanduser()
    if local.is_file():
        return local
    if local.is_dir() and text not in PRETRAINED:
        # A Hugging Face model folder (FlexTok's hub layout: config.json + model.safetensors).
        if (local / "model.safetensors").is_file():
            return local / "model.safetensors"
        raise CheckpointError(f"{text} is a folder; pass the checkpoint file inside it")
    return None


def _bundled_path(entry: PretrainedEntry) -> Path:
    """The file of a checkpoint shipped in alit_eval/assets; refuses one not bundled yet."""
    path = entry.cache_path()
    if not path.is_file():
        raise CheckpointError(
            f"the {entry.name} tokenizer is not bundled in this installation yet "
            f"(expected {entry.bundled} in alit_eval/assets); pass another checkpoint"
        )
    return path


def resolve_checkpoint(
    name_or_path: str | Path | PretrainedEntry,
    *,
    offline: bool = False,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> Path:
    """Return a local checkpoint file for a path, a pretrained name or a `PretrainedEntry`.

    Order: an existing local file > the cache > download (skipped when offline). Cached files are
    checked against the known sha256, or against the digest recorded at first download.

    Args:
        name_or_path: a file path, a name from `PRETRAINED` (see ``alit-eval models``), or an entry.
        offline: never use the network (also set by ``ALIT_EVAL_OFFLINE=1``/``HF_HUB_OFFLINE=1``).
        cache_dir: cache root; default ``$ALIT_EVAL_CACHE`` or ``~/.cache/alit-eval``.
        progress: show a progress bar on stderr while downloading.

    Returns:
        Path of the checkpoint file.

    Raises:
        CheckpointError: unknown name, missing file, unbundled demo, or sha256 mismatch.
        OfflineError: the file must be downloaded but the network is disabled, unavailable, or
            the toolkit has no URL for it. The message names the file, the cache path and the source.
    """
    if isinstance(name_or_path, PretrainedEntry):
        entry = name_or_path
    else:
        local = _local_file(str(name_or_path))
        if local is not None:
            return local
        entry = _entry_for(str(name_or_path))
    if entry.bundled:
        return _bundled_path(entry)

    root = cache_dir if cache_dir is not None else default_cache_dir()
    found = _find_cached(entry, root)
    if found is not None:
        _verify_cached(found, entry)
        return found

    dest = entry.cache_path(root)
    if offline or env_offline():
        raise _missing(entry, dest, "alit-eval is offline (--offline, ALIT_EVAL_OFFLINE or HF_HUB_OFFLINE)")
    if entry.hf_repo is not None:
        _download_hf(entry, dest)
        return dest
    if entry.url is None:
        raise _missing(entry, dest, "alit-eval has no direct download URL for it")
    _download(entry, dest, progress=progress)
    return dest


def load_pretrained(
    name_or_path: str | Path,
    *,
    offline: bool = False,
    trust_checkpoint: bool = False,
    heads: int | None = None,
    device: str = "cpu",
    family: str | None = None,
    **options: Any,
) -> tuple[Any, dict[str, Any]]:
    """Resolve and load a tokenizer of any family; return it with provenance for meta.json.

    The family comes from `family` (``--family``), else from the file's keys (the family registry).
    Inference options (`options`, by their declared names: ``halting=``, ``epsilon=``) default to the
    entry's for named checkpoints, then to the family's declared defaults; an option the family does
    not have (``halting`` for One-D-Piece) or a value its declaration refuses is a one-line error.

    Returns:
        ``(tokenizer, info)``; info holds name, path, sha256, family, config, the inference options
        used (``options``; the top-level ones, e.g. ``halting``, also as keys, None for families
        without them), default preprocess and budgets.
    """
    from alit_eval.paths import portable
    from alit_eval.tokenizers.family_loading import load_any
    from alit_eval.tokenizers.family_options import top_level_names
    from alit_eval.tokenizers.family_queries import family_of

    path = resolve_checkpoint(name_or_path, offline=offline)
    text = None if isinstance(name_or_path, Path) else str(name_or_path)
    entry = PRETRAINED.get(text) if text is not None and text in PRETRAINED else None
    options = dict(options)
    if entry is not None and (family is None or family == entry.family):
        for key, value in entry.options.items():
            if options.get(key) is None and value is not None:
                options[key] = value
    model = load_any(path, family=family, heads=heads, trust_checkpoint=trust_checkpoint,
                     name=entry.name if entry else path.stem, device=device, **options)
    fam = family_of(model)
    defaults = {**fam.option_defaults(), **{k: v for k, v in options.items() if v is not None}}
    used = {o: getattr(model, o, defaults.get(o)) for o in fam.option_names()}
    info = {"name": model.name, "path": portable(path), "sha256": checkpoint_sha256(path), "family": fam.name,
            "describe": fam.describe_config(model.cfg), "config": model.cfg.to_dict(),
            **{name: used.get(name) for name in top_level_names()}, "options": used,
            "default_preprocess": entry.preprocess if entry else None,
            "default_budgets": entry.budgets if entry else None,
            "notes": "; ".join(filter(None, (entry.precision, entry.notes))) if entry else fam.notes()}
    return model, info
