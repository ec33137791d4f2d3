"""Recognising and loading FlexTok checkpoints (the released hub layout and alit-eval's own files).

Where the config comes from, in order: an alit-eval config (``config`` metadata written by
`save_tokenizer`, family ``flextok``); the official hydra config in the safetensors metadata (the
released ``model.safetensors``: one ``str()`` entry per top-level key); the hub folder's
``config.json`` next to the file. It is always parsed as data (`official_config`); without any of
them the file is refused, because the scaling factor, posterior sampling and null condition cannot
be read from tensor shapes. The model is built on the meta device and loaded strictly (the official
``from_pretrained`` uses ``strict=False`` and would silently keep initial weights).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from alit_eval.errors import CheckpointError, ConfigError
from alit_eval.tokenizers.flextok.config import FIELDS, FlexTokConfig
from alit_eval.tokenizers.flextok.official_config import MAX_METADATA_CHARS, config_from_official, parse_metadata
from alit_eval.tokenizers.validate import safe_text

SENTINELS = ("encoder.module_dict.enc_register_module.registers",
             "decoder.module_dict.dec_nested_dropout.dropout_mask_token")


def looks_like_flextok(sd: Mapping[str, Any]) -> bool:
    return all(k in sd for k in SENTINELS)


def _sibling_config(source: str) -> dict[str, Any] | None:
    """The hub folder's ``config.json`` beside `source`, if there is one (small, JSON, data only)."""
    path = Path(source).with_name("config.json") if source and not source.startswith("<") else None
    if path is None or not path.is_file() or path.stat().st_size > MAX_METADATA_CHARS:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        raise ConfigError(f"{safe_text(path, 200)} is not valid JSON; it cannot be the FlexTok config") from None
    return data if isinstance(data, dict) and "encoder" in data else None


def config_for(sd: Mapping[str, Any], meta: Mapping[str, Any] | None, source: str,
               preset: str | None = None) -> FlexTokConfig:
    """The `FlexTokConfig` of a checkpoint (see the module docstring for where it comes from).

    Raises:
        ConfigError: no config anywhere, an unknown ``_target_``, or an unimplemented setting.
    """
    meta = dict(meta or {})
    own = meta.get("config")
    if isinstance(own, Mapping) and own.get("family") == "flextok":
        return FlexTokConfig.from_dict(own)
    raw = meta.get("metadata")
    official = parse_metadata(raw, safe_text(source, 200)) if isinstance(raw, Mapping) else None
    if official is None:
        official = _sibling_config(source)
    if official is None:
        raise ConfigError(
            f"{safe_text(source, 200)} carries no FlexTok config (neither in its safetensors metadata nor as a "
            "config.json beside it); the VAE scaling factor, posterior sampling and null condition cannot be "
            "read from the weights, so alit-eval will not guess them: use the released model.safetensors as published"
        )
    return config_from_official(official, sd, source=safe_text(source, 200), preset=preset)


def from_state_dict(sd: Mapping[str, torch.Tensor], config: FlexTokConfig | None = None, *, meta: Any = None,
                    name: str = "flextok", source: str = "<state_dict>", preset: str | None = None,
                    **decode: Any) -> Any:
    """Build a `FlexTokTokenizer` on the meta device and load `sd` strictly into it (no copy), through the
    project's one loading pipeline (`alit_eval.tokenizers.loading.load_checked`: finite weights, the
    config checked against `FIELDS`, strict load with the one key-mismatch message).

    Args:
        config: the architecture; None reads it from `meta` / the file (`config_for`).
        decode: default decode options (``steps``, ``guidance``, ``apg``, ``noise``).

    Raises:
        CheckpointError: not a FlexTok state_dict, or keys/shapes that disagree with the config.
    """
    from alit_eval.tokenizers.flextok.model import FlexTokTokenizer
    from alit_eval.tokenizers.loading import load_checked

    if not looks_like_flextok(sd):
        raise CheckpointError(f"{safe_text(source, 200)} is not a FlexTok checkpoint: it lacks "
                              f"{', '.join(k for k in SENTINELS if k not in sd)}")
    return load_checked(
        sd, title="FlexTok", source=source, fields=FIELDS,
        describe=lambda c: f"encoder {c.enc_width}w/{c.enc_depth}L, decoder {c.dec_width}w/{c.dec_depth}L, null "
                           f"condition {c.null_cond}",
        build=lambda cfg: FlexTokTokenizer(cfg, name=name, **decode),
        infer=(lambda: config) if config is not None else (lambda: config_for(sd, meta, source, preset)),
        hint="a config in the file's metadata that disagrees with its tensors, or a partial file",
    )
