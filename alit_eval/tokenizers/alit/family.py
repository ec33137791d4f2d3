"""ALIT family ingredients for the family registry: description, rate, compute, attention, loader.

Plain functions, so the registry entry in `alit_eval.tokenizers.families` points at them by
``"module:attr"``:

- `describe(cfg)`: one line for tables.
- `bits_per_token(cfg)`: ``log2(codebook_size)`` for quantised models (12 bits for 4096 codes);
  None for continuous ones (unquantised 12-d floats have no finite code rate).
- `flop_components(tokenizer)`: sub-modules per FLOP component, for hook-based counting.
- Decoder attention (`ATTENTION_DEFINITION`): the decoder sequence is ``[class ; g*g mask queries ;
  N latent tokens]``; "attention of 2D position p to token j" is the head-averaged softmax weight
  from query row ``1 + p`` to key ``1 + g*g + j`` per decoder layer (the corrected indexing; the
  official notebook read key ``g*g + j``, one row early), alit_official.md §1.7.
- `load_state_dict(sd, meta, ...)`: the registry's uniform loader signature.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from torch import nn

    from alit_eval.tokenizers.alit.config import AlitConfig

HAS_ATTENTION = True
ATTENTION_DEFINITION = (
    "head-averaged decoder attention from the mask query of 2D position p (row 1+p) to 1D token j "
    "(row 1+g*g+j), per decoder layer, at the rollout iteration that produced the budget"
)
PRECISION_NOTE = "official evaluation: float32 on GPU, batch size 1"


def describe(cfg: "AlitConfig") -> str:
    """One line for tables, e.g. ``ALIT alit_small, vqgan base, VQ 4096x12, w1024 d8 h8, 32..256 step 32``."""
    latents = f"VQ {cfg.codebook_size}x{cfg.token_dim}" if cfg.quantize else f"continuous {cfg.token_dim}-d"
    budgets = cfg.budgets
    return (f"ALIT {cfg.preset or 'custom'}, {cfg.base.kind} base, {latents}, w{cfg.width} d{cfg.depth} "
            f"h{cfg.heads}, {budgets[0]}..{budgets[-1]} step {cfg.tokens_per_iter}")


def bits_per_token(cfg: "AlitConfig") -> float | None:
    """Bits one 1D token costs: ``log2(codebook_size)`` when quantised, None when continuous."""
    return math.log2(cfg.codebook_size) if cfg.quantize else None


def flop_components(tokenizer: Any) -> dict[str, list["nn.Module"]]:
    """ALIT's sub-modules per FLOP component (disjoint subtrees), for hook-based FLOP counting."""
    base = tokenizer.base_tokenizer
    b = getattr(base, "vqgan", None) or getattr(base, "vae")
    enc = [b.encoder] + ([b.quant_conv] if hasattr(b, "quant_conv") else [])
    dec = [b.decoder] + ([b.post_quant_conv] if hasattr(b, "post_quant_conv") else [])
    return {"base_encoder": enc, "encoder_transformer": [tokenizer.encoder],
            "alit_decoder": [tokenizer.decoder], "base_decoder": dec}


def load_state_dict(
    sd: Mapping[str, Any], meta: Mapping[str, Any] | None = None, *, name: str = "alit",
    source: str = "<state_dict>", heads: int | None = None, halting: str = "seeded",
) -> Any:
    """The registry loader: a cleaned ALIT state_dict (+ ``args``/``config`` meta) -> `AlitTokenizer`."""
    from alit_eval.tokenizers.checkpoints import tokenizer_from_state_dict

    return tokenizer_from_state_dict(sd, meta, heads=heads, halting=halting, name=name, source=source)
