"""Transformer blocks (and their learned embeddings) with the official ALIT parameter names, shared by ALIT,
KARL and One-D-Piece/TiTok.

Official layout (alit_official.md §1.8): pre-LN residual block ``x + MHA(ln_1(x))`` then
``x + MLP(ln_2(x))`` with ``MLP = c_fc -> exact GELU -> c_proj`` and a fused-QKV
`nn.MultiheadAttention` (``attn.in_proj_weight``/``in_proj_bias``/``out_proj``). The official code is
sequence-first; we use ``batch_first=True``, which keeps the parameter names and the maths.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def embedding_param(*shape: int, width: int) -> nn.Parameter:
    """A learned embedding with the official init, ``width**-0.5 * randn`` (alit_official.md §1.9).

    A meta build (loading a checkpoint, whose tensors replace these) draws nothing: randn on the meta
    device imports torch._dynamo, seconds at the start of every command.
    """
    empty = torch.empty(*shape)
    return nn.Parameter(empty if empty.is_meta else width ** -0.5 * torch.randn(*shape))


def embedding_table(n: int, dim: int) -> nn.Embedding:
    """``nn.Embedding(n, dim)`` (a codebook); a meta build skips its ``normal_`` init, as `embedding_param`."""
    if torch.empty(0).is_meta:
        return nn.Embedding(n, dim, _weight=torch.empty(n, dim))
    return nn.Embedding(n, dim)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = width * mlp_ratio
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, hidden)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(hidden, width))]
            )
        )

    def forward(self, x: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Args: x ``[B, L, w]``. Returns the output and, if asked, head-averaged weights ``[B, L, L]``."""
        h = self.ln_1(x)
        a, w = self.attn(h, h, h, need_weights=need_weights, average_attn_weights=True)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, w


class Transformer(nn.Module):
    """A stack of blocks stored as ``transformer.{i}`` (the official key prefix)."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.transformer = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_ratio) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.transformer:
            x, _ = block(x)
        return x
