"""The 1D-token vector quantiser of ALIT (also KARL's): plain VQ with L2-normalised inputs and codebook.

alit_official.md §1.5: lookup by argmin squared Euclidean distance between the normalised vector and
normalised codebook rows (equivalent to max cosine); the output is the normalised codebook row.
Runs in float32 (the official module disables autocast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alit_eval.tokenizers.common.blocks import embedding_table


class VectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = embedding_table(codebook_size, dim)

    def normalized_codebook(self) -> torch.Tensor:
        return F.normalize(self.embedding.weight.float(), dim=-1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantise ``z`` ``[..., d]``.

        Returns:
            The L2-normalised codebook rows ``[..., d]`` (straight-through w.r.t. the normalised
            input) and the code indices ``[...]`` (int64).
        """
        shape = z.shape
        zf = F.normalize(z.float().reshape(-1, shape[-1]), dim=-1)
        e = self.normalized_codebook()
        d = zf.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2.0 * zf @ e.t()
        idx = d.argmin(dim=1)
        q = e[idx]
        # Straight-through estimator, written as the official code does (equals q up to rounding),
        # so training code gets gradients to the encoder through the same call.
        q = zf + (q - zf).detach()
        return q.reshape(shape), idx.reshape(shape[:-1])

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Return the normalised codebook rows for stored indices (decode-from-indices)."""
        return self.normalized_codebook()[indices]
