"""Closed-form FLOPs of the ViT blocks the 1D tokenizers share (families' `flops_per_budget`).

Counted as `torch.utils.flop_counter` counts them: 2 FLOPs per multiply-add, matmuls and attention
only (norms, softmax and activations not counted).
"""

from __future__ import annotations


def transformer_flops(tokens: int, width: int, depth: int, mlp_ratio: int) -> int:
    """FLOPs of `depth` pre-norm transformer blocks over a sequence of `tokens` of width `width`.

    Per block and token: fused QKV (3 w^2), output projection (w^2) and MLP (2 * ratio * w^2)
    multiply-adds; plus Q K^T and A V (``tokens * w`` each per token).
    """
    per_block = 2 * tokens * width * width * (4 + 2 * mlp_ratio) + 4 * tokens * tokens * width
    return depth * per_block
