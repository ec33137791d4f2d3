"""KARL family ingredients for the family registry: description, rate, compute, attention, presets.

Plain functions and attributes, so a registry entry can point at them by ``"module:attr"``:

- `describe(cfg)`: one line for tables.
- `bits_per_token(cfg)`: log2 of the 1D codebook size for quantised models (12 bits for 4096 codes);
  None for continuous models, whose tokens are unquantised 12-d float vectors with no finite code
  rate (a rate–distortion analysis must leave them out or choose its own quantisation).
- `flop_components(tokenizer)` (modules per component, for hook-based counting) and
  `transformer_flops(cfg, budget)` (closed form). KARL's cost per budget T: one base encode per
  image (shared by all budgets of a call), one encoder pass over ``1 + g*g + T`` tokens, one decoder
  pass over ``g*g + T`` tokens and one base decode, per budget. Halting masks slots in the decoder;
  it never shortens the sequence, so the cost depends on T only, not on ε or the image.
- `attention_maps`: the decoder-attention definition. "Attention of 2D position p to token j" is
  the head-averaged attention weight of decoder query row p (one of the ``g*g`` mask-token rows,
  row-major) on key ``g*g + j`` (latent slot j) in each decoder layer, read from the official decoder
  structure (karl_official.md §2.7: sequence ``[256 mask tokens ; T latents]``, no class token).
  Slots halted by the model receive exactly 0 (they are masked for every query). The official code
  never returns attention weights (``need_weights=False``), so there is no official map to match.
- `PRESETS`, `VARIANTS`, `INFERENCE_OPTIONS` (from `karl.options.OPTIONS`, the one declaration),
  `looks_like_karl`, `from_state_dict`, `load_karl`.
"""

from __future__ import annotations

import math
from typing import Any

from alit_eval.tokenizers.flops import transformer_flops as block_flops
from alit_eval.tokenizers.karl.checkpoint import from_state_dict, load_karl, looks_like_karl
from alit_eval.tokenizers.karl.config import PRESETS, VARIANTS, KarlConfig
from alit_eval.tokenizers.karl.model import KarlTokenizer
from alit_eval.tokenizers.karl.options import OPTIONS

FAMILY = "karl"
CONFIG_TYPE = KarlConfig
TOKENIZER_TYPE = KarlTokenizer
# The inference options (name -> (default, help)), derived from their one declaration (karl/options.py).
INFERENCE_OPTIONS: dict[str, tuple[Any, str]] = {o.name: (o.default, o.help) for o in OPTIONS}
attention_maps = KarlTokenizer.attention_maps

__all__ = ["FAMILY", "CONFIG_TYPE", "TOKENIZER_TYPE", "INFERENCE_OPTIONS", "PRESETS", "VARIANTS", "describe",
           "bits_per_token", "flop_components", "transformer_flops", "attention_maps", "looks_like_karl",
           "from_state_dict", "load_karl"]


def describe(cfg: KarlConfig) -> str:
    """One line for tables, e.g. ``KARL karl_small, vqgan base, VQ 4096x12, w1024 d8 h8, T 1..512``."""
    latents = f"VQ {cfg.codebook_size}x{cfg.token_dim}" if cfg.quantize else f"continuous {cfg.token_dim}-d"
    dec = "" if (cfg.dec_width, cfg.dec_depth, cfg.dec_heads) == (cfg.width, cfg.depth, cfg.heads) else (
        f" / dec w{cfg.dec_width} d{cfg.dec_depth} h{cfg.dec_heads}")
    return (f"KARL {cfg.preset or 'custom'}, {cfg.base.kind} base, {latents}, w{cfg.width} d{cfg.depth} "
            f"h{cfg.heads}{dec}, T 1..{cfg.max_tokens}, halting p>{cfg.halting_threshold:g}")


def bits_per_token(cfg: KarlConfig) -> float | None:
    """Bits one 1D token carries: ``log2(codebook_size)`` when quantised, None when continuous.

    Halted slots carry no information to the decoder; the rate of an image is
    ``bits_per_token * num_active`` (``extras["num_active"]``), not ``* T``.
    """
    return math.log2(cfg.codebook_size) if cfg.quantize else None


def flop_components(tokenizer: KarlTokenizer) -> dict[str, list[Any]]:
    """KARL's sub-modules per FLOP component, for `alit_eval.analysis.flops.count_flops`.

    ``halting_head`` covers the halting MLP; the VQ lookup and the latent/bottleneck linears fall in
    ``other``. The decoder component holds ``decoder`` and the top-level ``decoder_embed``.
    """
    base = tokenizer.base_tokenizer
    b = getattr(base, "vqgan", None) or getattr(base, "vae")
    enc = [b.encoder] + ([b.quant_conv] if hasattr(b, "quant_conv") else [])
    dec = [b.decoder] + ([b.post_quant_conv] if hasattr(b, "post_quant_conv") else [])
    return {"base_encoder": enc + [tokenizer.patch_embed], "encoder_transformer": [tokenizer.encoder],
            "halting_head": [tokenizer.halting_mlp], "latent_decoder": [tokenizer.decoder, tokenizer.decoder_embed],
            "base_decoder": dec}


def transformer_flops(cfg: KarlConfig, budget: int) -> dict[str, int]:
    """Closed-form matmul FLOPs (2 per multiply-add) of the KARL transformer parts at one budget.

    Args:
        cfg: model configuration.
        budget: slots T (1..max_tokens).

    Returns:
        ``encoder_transformer`` (``1 + g*g + T`` tokens), ``halting_head`` (T slots), ``latent_decoder``
        (``decoder_embed`` on T slots, the blocks on ``g*g + T`` tokens, the FFN head on ``g*g`` rows).
        The base encoder/decoder (convolutions) are not included: count them with `flop_components`.
    """
    n2d, t = cfg.num_2d, int(budget)
    enc = block_flops(1 + n2d + t, cfg.width, cfg.depth, cfg.mlp_ratio)
    halt = 2 * t * (cfg.width * cfg.halting_hidden + cfg.halting_hidden)
    dw = cfg.dec_width
    dec = (2 * t * cfg.token_dim * dw + block_flops(n2d + t, dw, cfg.dec_depth, cfg.mlp_ratio)  # type: ignore[arg-type]
           + 2 * n2d * (dw * 2 * dw + 2 * dw * cfg.decoder_out))  # type: ignore[operator]
    return {"encoder_transformer": enc, "halting_head": halt, "latent_decoder": dec}


def load_state_dict(sd: Any, meta: Any = None, *, name: str = "karl", source: str = "<state_dict>",
                    heads: int | None = None, halting: str = "seeded", epsilon: float = 0.0) -> KarlTokenizer:
    """The family registry's uniform loader: cleaned state_dict + reader meta (``args``/``config``)."""
    meta = dict(meta or {})
    return from_state_dict(sd, meta.get("args"), meta.get("config"), heads=heads, halting=halting,
                           epsilon=epsilon, name=name, source=source)
