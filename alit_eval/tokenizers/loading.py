"""The one loading pipeline every family's loader goes through (the family contract, step 3).

After the file is read safely (`alit_eval.tokenizers.checkpoints.read_checkpoint`) and the family
detected from its keys (`alit_eval.tokenizers.family_loading.detect_family`), a family's loader calls
`load_checked`, which runs, in this order and before anything is allocated:

1. the weights: floating point and finite, naming the first bad tensor (`validate.check_tensors`);
2. the config: a dict from the file is checked against the family's field table (types, bounds,
   unknown names; `validate.check_config_dict`) before the config type sees it; a config inferred
   from shapes and ``args`` is checked against the same table (a header claiming depth 10^6, or
   ``args.encoder_num_heads = 4.9``, is one line, in milliseconds);
3. the family's cross-check of the config against the tensor shapes, where it has one;
4. the build on the meta device (no weight allocated twice) and the strict load, whose key/shape
   differences are the one message of `key_mismatch`.

Errors are one line (`ConfigError` / `CheckpointError`) that start with the file's name.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from alit_eval.errors import CheckpointError, ConfigError
from alit_eval.tokenizers.validate import check_config_dict, check_fields, check_tensors, safe_text


def checked_config(
    *, title: str, source: str, fields: Mapping[str, tuple[Any, ...]], raw: Any = None,
    from_dict: Callable[[Mapping[str, Any]], Any] | None = None, infer: Callable[[], Any] | None = None,
) -> Any:
    """The family's config: `from_dict(raw)` after checking `raw` against `fields`, else `infer()`;
    either way its ``to_dict()`` checked against `fields` too.

    Raises:
        ConfigError: a field of wrong type, out of its bounds or unknown (``<source>: config field ...``).
        CheckpointError: a config that cannot be inferred from the weights (names what is missing).
    """
    try:
        if raw is not None:
            check_config_dict(raw, fields)
            cfg = from_dict(raw)  # type: ignore[misc]
        else:
            cfg = infer()  # type: ignore[misc]
        to_dict = getattr(cfg, "to_dict", None)
        if to_dict is not None:
            check_fields(to_dict(), fields)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except (KeyError, ValueError, TypeError, IndexError, OverflowError) as e:
        raise CheckpointError(f"cannot infer the {title} configuration of {source}: {safe_text(e, 200)}") from None
    return cfg


def load_checked(
    sd: Mapping[str, Any], *, title: str, source: str, fields: Mapping[str, tuple[Any, ...]],
    build: Callable[[Any], Any], describe: Callable[[Any], str], raw_config: Any = None,
    from_dict: Callable[[Mapping[str, Any]], Any] | None = None, infer: Callable[[], Any] | None = None,
    cross_check: Callable[[Any, Mapping[str, Any]], None] | None = None, what: str = "",
    hint: str = "a different architecture or a partial file",
) -> Any:
    """Check, build on the meta device and load `sd` strictly (see the module docstring).

    Args:
        sd: the cleaned state_dict (float32, container unwrapped).
        title: the family's display name, for messages.
        source: how to name the weights in errors (a file name; escaped here).
        fields: the family's config field table.
        build: ``build(cfg) -> model`` (called under ``torch.device("meta")``).
        describe: ``describe(cfg)`` -> the config in a few words, for the key-mismatch message.
        raw_config / from_dict / infer: see `checked_config`.
        cross_check: ``f(cfg, sd)`` raising `ConfigError` where the config disagrees with the shapes.
        what: how to call the config in the mismatch message (default ``"<title> config"``).
        hint: the likely cause named after a key mismatch.

    Returns:
        The model in eval mode, its parameters the tensors of `sd` (meta tensors give a meta model).
    """
    import torch

    source = safe_text(source, 200)
    try:
        check_tensors(sd, title)
    except CheckpointError as e:
        raise CheckpointError(f"{source}: {e}") from None
    cfg = checked_config(title=title, source=source, fields=fields, raw=raw_config, from_dict=from_dict, infer=infer)
    if cross_check is not None:
        try:
            cross_check(cfg, sd)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    try:
        with torch.device("meta"):
            model = build(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except (ValueError, TypeError, ZeroDivisionError, RuntimeError) as e:  # a config the model cannot take
        raise CheckpointError(f"cannot build the {title} model of {source}: {safe_text(e, 200)}") from None
    parts = key_mismatch(model.state_dict(), sd)
    if parts:
        raise CheckpointError(
            f"checkpoint {source} does not match the {what or title + ' config'} ({describe(cfg)}): "
            f"{'; '.join(parts)}. Likely cause: {hint}."
        )
    model.load_state_dict(dict(sd), strict=True, assign=True)
    return model.eval()


def key_mismatch(expected: Mapping[str, Any], sd: Mapping[str, Any], shown: int = 5) -> list[str]:
    """What keeps `sd` from loading strictly into a model whose state_dict is `expected`.

    Returns:
        One readable part per kind of difference (``"2 missing: a, b"``, ``"1 unexpected: c"``,
        ``"1 wrong shape: d (3, 4) vs (4, 4)"``, the file's shape first), key names escaped and
        shortened; empty when the keys and shapes agree. Every family's loader words its error with it.
    """
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(f"{safe_text(k, 60)} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}"
                   for k in set(expected) & set(sd) if tuple(expected[k].shape) != tuple(sd[k].shape))
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
            names = keys[:shown] if label == "wrong shape" else [safe_text(k, 60) for k in keys[:shown]]
            parts.append(f"{len(keys)} {label}: {', '.join(names)}{more}")
    return parts
