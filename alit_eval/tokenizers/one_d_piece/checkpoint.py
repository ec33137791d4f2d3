"""Recognising and loading One-D-Piece / TiTok checkpoints (the released Hugging Face layout).

The released files (``turing-motors/One-D-Piece-{S,B,L}-256/pytorch_model.bin``) are plain
``torch.save(model.state_dict())`` pickles of float32 tensors whose keys are exactly this package's
parameter names (one_d_piece_official.md §2), so the conversion is only a clean-up (prefixes left by
DDP or ``torch.compile``, float32). Reading goes through the shared safe reader
`alit_eval.tokenizers.checkpoints.read_checkpoint` (``weights_only`` unpickling, safetensors).
One-D-Piece and TiTok files have the same keys; the family follows from the config (see
`config.infer_config`). Heads are not stored; they come from the official size table or the caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from alit_eval.errors import CheckpointError
from alit_eval.tokenizers.loading import load_checked
from alit_eval.tokenizers.one_d_piece.config import FIELDS, OneDPieceConfig, infer_config
from alit_eval.tokenizers.validate import safe_text

# Keys every stage-2 One-D-Piece / TiTok state_dict has and no ALIT or KARL one does.
SENTINELS = (
    "latent_tokens",
    "encoder.positional_embedding",
    "encoder.latent_token_positional_embedding",
    "decoder.mask_token",
    "pixel_quantize.embedding.weight",
)
STRIP_PREFIXES = ("module.", "_orig_mod.")


def looks_like_one_d_piece(sd: Mapping[str, Any]) -> bool:
    """True when `sd` has the keys of a One-D-Piece or TiTok tokenizer (the two share a layout)."""
    return all(k in sd for k in SENTINELS) and "timestep_embedding" not in sd


looks_like_titok = looks_like_one_d_piece


def convert_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official state_dict -> this package's (pure; the names already agree).

    Strips ``module.`` / ``_orig_mod.`` prefixes and upcasts floating tensors to float32.
    """
    out = {}
    for key, value in sd.items():
        for prefix in STRIP_PREFIXES:
            key = key.removeprefix(prefix)
        out[key] = value.float() if value.is_floating_point() else value
    return out


def from_state_dict(
    sd: Mapping[str, torch.Tensor],
    config: OneDPieceConfig | None = None,
    *,
    heads: int | None = None,
    family: str | None = None,
    name: str = "one_d_piece",
    source: str = "<state_dict>",
) -> Any:
    """Build a `OneDPieceTokenizer` on the meta device and load `sd` strictly into it (no copy).

    Args:
        sd: official or converted state_dict.
        config: the architecture; inferred from shapes when None.
        heads, family: passed to `infer_config` when `config` is None.
        name: display name.
        source: what to call the weights in errors (a file name).

    Raises:
        CheckpointError: not a One-D-Piece/TiTok state_dict, config not inferable, or keys/shapes that
            do not match (one line listing missing, unexpected and wrongly shaped keys).
    """
    from alit_eval.tokenizers.one_d_piece.model import OneDPieceTokenizer

    sd = convert_official(sd)
    source = safe_text(source, 200)
    if not looks_like_one_d_piece(sd):
        if "latent_tokens" in sd and "pixel_quantize.embedding.weight" not in sd and "encoder.positional_embedding" in sd:
            raise CheckpointError(
                f"{source} looks like a stage-1 TiTok/One-D-Piece checkpoint (no pixel decoder); only stage-2 "
                "models with pixel_decoder.* weights (every release) are supported"
            )
        raise CheckpointError(
            f"{source} is not a One-D-Piece/TiTok checkpoint: it lacks {', '.join(k for k in SENTINELS if k not in sd)}"
        )
    return load_checked(
        sd, title="One-D-Piece/TiTok", source=source, fields=FIELDS,
        raw_config=config.to_dict() if isinstance(config, OneDPieceConfig) else config,
        from_dict=OneDPieceConfig.from_dict, infer=lambda: infer_config(sd, heads=heads, family=family),
        build=lambda cfg: OneDPieceTokenizer(cfg, name=name), what="One-D-Piece/TiTok config",
        describe=lambda cfg: f"width {cfg.width}, depth {cfg.depth}, {cfg.num_latent_tokens} tokens",
        hint="another variant or a partial file")


def load_one_d_piece(
    path: str | Path,
    config: OneDPieceConfig | None = None,
    *,
    heads: int | None = None,
    family: str | None = None,
    trust_checkpoint: bool = False,
    name: str | None = None,
    device: str | torch.device = "cpu",
) -> Any:
    """Load a released ``pytorch_model.bin`` (or a safetensors file) into a `OneDPieceTokenizer`.

    A safetensors file written with an alit-eval ``config`` metadata entry supplies the config.
    """
    from alit_eval.tokenizers.checkpoints import read_checkpoint

    path = Path(path)
    sd, meta = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    if config is None and isinstance(meta.get("config"), Mapping) and "num_latent_tokens" in meta["config"]:
        config = OneDPieceConfig.from_dict(meta["config"])
    model = from_state_dict(sd, config, heads=heads, family=family, name=name or path.stem, source=str(path))
    return model.to(device)
