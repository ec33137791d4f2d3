"""Recognising a checkpoint's family and loading or converting it, for any registered family.

`detect_family` picks the one auto-detectable family whose key patterns match a state_dict;
`load_any` reads a file or state_dict once (`alit_eval.tokenizers.checkpoints.read_checkpoint`),
detects or takes the family, checks the inference options against its declarations and calls its
loader (which runs the per-family pipeline steps of `alit_eval.tokenizers.loading`); `convert_any`
writes any family's checkpoint as alit-eval safetensors. No family is named here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Mapping

from alit_eval.errors import CheckpointError
from alit_eval.tokenizers.families import FAMILIES, Family, get_family


def detect_family(keys: Collection[str], *, source: str = "<state_dict>") -> Family:
    """The one auto-detectable family whose sentinels match `keys` (a state_dict or its keys).

    Raises:
        CheckpointError: no family matches (names the families and ``--family``), or several do
            (asks for ``--family``).
    """
    from alit_eval.tokenizers.validate import safe_text

    source = safe_text(source, 200)
    found = [f for _, f in FAMILIES.items() if f.detect_as is None and f.matches(keys)]
    if len(found) == 1:
        return found[0]
    if found:
        names = [f.name for f in found]
        raise CheckpointError(
            f"{source} matches the checkpoint keys of several families ({', '.join(names)}); pass --family "
            f"{' or --family '.join(names)}"
        )
    sample = ", ".join(safe_text(k, 60) for k in sorted(str(k) for k in keys)[:4]) or "no keys"
    raise CheckpointError(
        f"{source} is not a checkpoint of a known tokenizer family ({', '.join(FAMILIES.names())}); if it is one "
        f"of them, pass --family NAME (first keys: {sample})"
    )


def load_any(
    path_or_sd: str | Path | Mapping[str, Any],
    *,
    family: str | None = None,
    meta: Mapping[str, Any] | None = None,
    name: str | None = None,
    heads: int | None = None,
    trust_checkpoint: bool = False,
    device: Any = "cpu",
    source: str | None = None,
    **options: Any,
) -> Any:
    """Load a tokenizer of any registered family from a file or a state_dict.

    The file is read once (`alit_eval.tokenizers.checkpoints.read_checkpoint`: safe unpickling,
    container unwrapping, ``gan_losses`` dropped, float32); the family is detected from its keys
    unless `family` names it; the family's loader then builds the model strictly.

    Args:
        path_or_sd: a checkpoint file, or an already-loaded state_dict or checkpoint container
            (``{'ema': ..., 'args': ...}``); `meta` may add ``args``/``config``.
        family: force a family (``--family``); None detects it.
        name: display name (default: the file's stem, or the family name).
        heads: attention heads, for architectures the weights do not determine.
        trust_checkpoint: allow full unpickling (trusted files only).
        device: where to put the model (None: leave it where the loader built it, e.g. on meta).
        source: how to call the weights in errors (default: the path).
        **options: the family's inference options by their declared names; None values are
            ignored (the declared default is used), an option the family lacks or a value its
            declaration refuses is a one-line error.

    Returns:
        The tokenizer, with ``tokenizer.family`` set to its family's name.
    """
    if isinstance(path_or_sd, Mapping):
        from alit_eval.tokenizers.checkpoints import unwrap

        # The same container handling as a file: ema/model/state_dict unwrapped, gan_losses dropped.
        sd, args = unwrap(path_or_sd, source or "<state_dict>")
        meta = {**({"args": args} if args else {}), **dict(meta or {})}
        source = source or "<state_dict>"
        name = name or family or "tokenizer"
    else:
        from alit_eval.tokenizers.checkpoints import read_checkpoint

        path = Path(path_or_sd)
        sd, meta = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
        source, name = source or str(path), name or path.stem
    entry = get_family(family) if family else detect_family(sd, source=source)
    # The declared defaults first, so every loader receives every option of its family.
    kwargs = {**entry.option_defaults(), **entry.check_options(options)}
    if family:
        kwargs = {**entry.explicit, **kwargs}
    model = entry.load_fn()(sd, meta, name=name, source=source, heads=heads, **kwargs)
    # A loader may refine the family (a TiTok-shaped file detected through One-D-Piece's layout).
    refined = getattr(getattr(model, "cfg", None), "family", None)
    model.family = refined if isinstance(refined, str) and refined in FAMILIES else entry.name
    return model if device is None else model.to(device)


def convert_any(src: str | Path, dst: str | Path, *, family: str | None = None, trust_checkpoint: bool = False,
                heads: int | None = None) -> dict[str, Any]:
    """Convert a checkpoint of any family to alit-eval safetensors (weights + config + family).

    The written file loads without pickle through `load_any`, which recognises the family from the
    keys and takes the architecture from the stored config (so a TiTok stays TiTok).

    Returns:
        A summary: family, config, num_params, source_sha256, sha256, path.
    """
    from alit_eval.paths import sha256_file
    from alit_eval.tokenizers.checkpoints import save_tokenizer

    model = load_any(src, family=family, heads=heads, trust_checkpoint=trust_checkpoint)
    src_hash = sha256_file(src)
    out = save_tokenizer(model, dst, {"source_sha256": src_hash, "source_name": Path(src).name,
                                      "family": model.family})
    return {"family": model.family, "config": model.cfg.to_dict(),
            "num_params": sum(p.numel() for p in model.parameters()), "source_sha256": src_hash,
            "sha256": sha256_file(out), "path": str(out)}
