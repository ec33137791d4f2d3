"""Loading KARL checkpoints: sentinel-key detection, official-layout conversion, strict loading.

The official training code saves ``{'model', 'optimizer', 'ema', 'epoch', 'args', ...}`` and inference
reads only ``ema`` (karl_official.md §1). Files are read with the safe reader of
`alit_eval.tokenizers.checkpoints` (allow-list: ``argparse.Namespace``), which also unwraps ``ema``,
drops ``gan_losses.*`` and upcasts float16 to float32. The model keeps the official key names, so
`convert_official` only normalises the container; loading is strict, with one readable error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from alit_eval.errors import CheckpointError
from alit_eval.tokenizers.checkpoints import clean_state_dict, read_checkpoint, unwrap
from alit_eval.tokenizers.karl.config import FIELDS, KarlConfig, infer_config
from alit_eval.tokenizers.karl.model import KarlTokenizer
from alit_eval.tokenizers.loading import load_checked
from alit_eval.tokenizers.validate import safe_text

# Keys only KARL has (ALIT has none of them; karl_official.md §2.8 "Keys removed / added").
KARL_SENTINELS = ("rec_loss_embeddings", "halting_mlp.0.weight", "decoder_latent_tokens_timestep_embed",
                  "latent_tokens")


def looks_like_karl(sd: Mapping[str, Any]) -> bool:
    """True when a (flat, possibly ``module.``-prefixed) state_dict carries every KARL sentinel key."""
    keys = {k.removeprefix("module.") for k in sd}
    return all(k in keys for k in KARL_SENTINELS)


def convert_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official KARL ``ema`` state_dict -> this model's state_dict (pure; returns a new dict).

    The names are the official ones, so this only strips DDP ``module.`` prefixes, drops the training
    losses (``gan_losses.*``: 8 LPIPS + PatchGAN modules, 440 keys) and upcasts floats to float32.
    Meta tensors pass through unchanged in shape.
    """
    return clean_state_dict(sd)


def from_state_dict(
    sd: Mapping[str, torch.Tensor],
    args: Mapping[str, Any] | None = None,
    config: KarlConfig | Mapping[str, Any] | None = None,
    *,
    heads: int | None = None,
    halting: str = "official",
    epsilon: float = 0.0,
    name: str = "karl",
    source: str = "<state_dict>",
) -> KarlTokenizer:
    """Build a `KarlTokenizer` from an official (or converted) state_dict and load it strictly.

    Goes through the one loading pipeline (`alit_eval.tokenizers.loading.load_checked`): weights and
    config checked, the model built on the meta device and the tensors assigned, so no weight is
    allocated twice; meta tensors in `sd` give a meta model (layout checks without memory).

    Args:
        sd: flat state_dict (``gan_losses.*`` and ``module.`` are handled by `convert_official`).
        args: the checkpoint's ``args`` (argparse values as a dict) for heads/preset, if present.
        config: an explicit `KarlConfig` (or its dict); otherwise inferred from `sd` and `args`.
        heads: explicit attention heads (overrides `args` when inferring).
        halting, epsilon, name: `KarlTokenizer` options.
        source: how to name the checkpoint in errors.

    Raises:
        CheckpointError: not a KARL state_dict, config not inferable, bad weights, or keys/shapes do not match.
        ConfigError: a config field of wrong type or out of its bounds.
    """
    sd = convert_official(sd)
    source = safe_text(source, 200)
    if not looks_like_karl(sd):
        sample = ", ".join(safe_text(k, 60) for k in sorted(sd)[:4])
        raise CheckpointError(
            f"{source} is not a KARL checkpoint: it lacks the KARL keys ({', '.join(KARL_SENTINELS)}); "
            f"first keys: {sample}"
        )
    if isinstance(config, KarlConfig):
        config = config.to_dict()
    return load_checked(
        sd, title="KARL", source=source, fields=FIELDS, raw_config=config, from_dict=KarlConfig.from_dict,
        infer=lambda: infer_config(sd, heads=heads, args=args),
        build=lambda cfg: KarlTokenizer(cfg, halting=halting, epsilon=epsilon, name=name),
        describe=lambda cfg: f"width {cfg.width}, depth {cfg.depth}, base {cfg.base.kind}, quantised {cfg.quantize}")


def from_checkpoint_object(obj: Any, **kwargs: Any) -> KarlTokenizer:
    """`from_state_dict` for an already-loaded checkpoint container (``{'ema': ..., 'args': ...}``)."""
    sd, args = unwrap(obj)
    return from_state_dict(sd, args, **kwargs)


def load_karl(path: str | Path, *, trust_checkpoint: bool = False, device: str | torch.device = "cpu",
              **kwargs: Any) -> KarlTokenizer:
    """Read an official KARL ``.pth`` (or a safetensors file with a KARL ``config``) safely and load it.

    Args:
        path: checkpoint file.
        trust_checkpoint: allow full unpickling (only for trusted files).
        device: where to put the model.
        **kwargs: passed to `from_state_dict` (``heads``, ``halting``, ``epsilon``, ``name``).
    """
    path = Path(path)
    sd, meta = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    kwargs.setdefault("name", path.stem)
    model = from_state_dict(sd, meta.get("args"), meta.get("config"), source=str(path), **kwargs)
    return model.to(device)
