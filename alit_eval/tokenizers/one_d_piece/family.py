"""Family ingredients of One-D-Piece / TiTok as plain functions (for a family registry to point at).

- `describe`: one line for tables.
- `bits_per_token`: ``log2(codebook size)`` (12 bits for every release).
- `flop_components` / `flops_per_budget`: the model's sub-modules per FLOP component (for hook-based
  counting), and the same components computed in closed form per prefix length k.
- Decoder attention (`ATTENTION_DEFINITION`, `OneDPieceTokenizer.attention_maps`): the decoder
  sequence is ``[class ; g*g mask queries ; k tokens]`` (length 1 + g*g + k, full bidirectional
  attention); "attention of 2D position p to token j" is the softmax weight, averaged over heads,
  from the query at row ``1 + p`` (p row-major over the g x g grid) to the key of token j at row
  ``1 + g*g + j``, per decoder layer. Caveat: because of the encoder's legacy reshape, token j is
  not a summary of one encoder latent (it mixes one feature of all N latents), so maps describe the
  decoder's reading of the 1D sequence, not the encoder's allocation.

Precision and provenance, to record with numbers: the official One-D-Piece evaluation
(``eval_tokenizer.py``) ran under Accelerate bf16 autocast with TF32 matmul/cuDNN on GPU (only the
VQ step in float32); this model reproduces the official code in float32 within the fixture
tolerances, so bf16/TF32 GPU figures match the published ones statistically, not bit for bit. The
released Hugging Face weights (uploaded November 2024) predate the repository's tail-drop fix
(commit 473665d, 2025-04-02): they were presumably trained with prefix lengths 1..N-1, so the decoder
never saw token N in training; k = N is still what the official scripts evaluate.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from alit_eval.tokenizers.flops import transformer_flops
from alit_eval.tokenizers.one_d_piece.config import OneDPieceConfig

if TYPE_CHECKING:
    from torch import nn

    from alit_eval.tokenizers.one_d_piece.model import OneDPieceTokenizer

HAS_ATTENTION = True
ATTENTION_DEFINITION = (
    "head-averaged decoder attention from the mask query of 2D position p (row 1+p) to 1D token j "
    "(row 1+g*g+j), per decoder layer, in the prefix decode of k tokens"
)
FLOP_COMPONENTS = ("encoder", "quantizer", "decoder", "soft_code", "pixel_decoder")
PRECISION_NOTE = "official evaluation: bf16 autocast + TF32 on GPU (VQ in float32)"
RELEASE_NOTE = "released weights predate the tail-drop fix (473665d): token N unseen in training"


def describe(cfg: OneDPieceConfig) -> str:
    """One line for tables, e.g. ``One-D-Piece S (512w/8L) 256 tokens, prefix 1..256, VQ 4096x12``."""
    size = {512: "S", 768: "B", 1024: "L"}.get(cfg.width, f"{cfg.width}w")
    name = "One-D-Piece" if cfg.family == "one_d_piece" else "TiTok"
    budgets = f"fixed {cfg.num_latent_tokens}" if cfg.strict_length else f"prefix 1..{cfg.num_latent_tokens}"
    return (f"{name} {size} ({cfg.width}w/{cfg.depth}L) {cfg.num_latent_tokens} tokens, {budgets}, "
            f"VQ {cfg.codebook_size}x{cfg.token_size}")


def bits_per_token(cfg: OneDPieceConfig) -> float:
    """Bits one 1D token costs: ``log2(codebook_size)`` (12.0 for all releases)."""
    return math.log2(cfg.codebook_size)


def flop_components(model: "OneDPieceTokenizer") -> dict[str, list["nn.Module"]]:
    """Sub-modules per FLOP component (disjoint subtrees), for hook-based FLOP counting."""
    return {"encoder": [model.encoder], "quantizer": [model.quantize], "decoder": [model.decoder],
            "soft_code": [model.pixel_quantize], "pixel_decoder": [model.pixel_decoder]}


def _pixel_decoder(cfg: OneDPieceConfig) -> int:
    h, mult, s = cfg.pixel_hidden, cfg.pixel_channel_mult, cfg.grid

    def res(c_in: int, c_out: int, side: int) -> int:
        n = 2 * 9 * side * side * (c_in * c_out + c_out * c_out)
        return n + (2 * side * side * c_out * c_out if c_in != c_out else 0)

    top = h * mult[-1]
    total = 2 * 9 * s * s * cfg.pixel_z_channels * top + 2 * res(top, top, s)
    c = top
    for i in reversed(range(len(mult))):
        for _ in range(cfg.pixel_res_blocks):
            total += res(c, h * mult[i], s)
            c = h * mult[i]
        if i != 0:
            s *= 2
            total += 2 * 9 * s * s * c * c
    return total + 2 * 9 * s * s * c * 3


def flops_per_budget(cfg: OneDPieceConfig, k: int) -> dict[str, int]:
    """FLOPs (2 per multiply-add; matmuls, convolutions and attention only) of one image at prefix k.

    ``encoder`` and ``quantizer`` do not depend on k (all N tokens are always encoded); ``decoder``
    grows with k (sequence 1 + g*g + k); ``soft_code`` and ``pixel_decoder`` are the pixel stage.
    The same conventions as `torch.utils.flop_counter` (norms, softmax and activations not counted).
    """
    n2d, n, d = cfg.num_2d, cfg.num_latent_tokens, cfg.token_size
    enc = (2 * 3 * cfg.patch_size ** 2 * cfg.width * n2d
           + transformer_flops(1 + n2d + n, cfg.width, cfg.depth, cfg.mlp_ratio) + 2 * cfg.width * d * n)
    dw = cfg.dec_width
    dec = (2 * k * d * dw + transformer_flops(1 + n2d + k, dw, cfg.dec_depth, cfg.mlp_ratio)
           + 2 * n2d * (dw * 2 * dw + 2 * dw * cfg.pixel_codebook_size))
    out = {
        "encoder": enc,
        "quantizer": 2 * n * d * cfg.codebook_size,
        "decoder": dec,
        "soft_code": 2 * n2d * cfg.pixel_codebook_size * cfg.pixel_z_channels,
        "pixel_decoder": _pixel_decoder(cfg),
    }
    out["total"] = sum(out.values())
    return out


def load_state_dict(sd: Any, meta: Any = None, *, name: str = "one_d_piece", source: str = "<state_dict>",
                    heads: int | None = None, kind: str | None = None) -> "OneDPieceTokenizer":
    """The family registry's uniform loader: cleaned state_dict + reader meta -> `OneDPieceTokenizer`.

    Args:
        kind: ``"one_d_piece"`` (prefix decode) or ``"titok"`` (full length only); None infers it
            from the released presets (a TiTok-shaped file becomes TiTok, anything else One-D-Piece).
    """
    from alit_eval.tokenizers.one_d_piece.checkpoint import from_state_dict

    meta = dict(meta or {})
    config = None
    if isinstance(meta.get("config"), dict) and "num_latent_tokens" in meta["config"]:
        config = OneDPieceConfig.from_dict(meta["config"])
        if kind is not None and config.family != kind:
            config = OneDPieceConfig.from_dict({**config.to_dict(), "family": kind, "strict_length": None,
                                                "preset": None})
    return from_state_dict(sd, config, heads=heads, family=kind, name=name, source=source)
