"""TiTok encoder, 1D vector quantiser and latent decoder with the official parameter names.

Semantics (one_d_piece_official.md §1.3-1.5), all reproduced on purpose:

- encoder sequence ``[class ; 256 patches] + pos`` then N latent tokens ``latent_tokens + latent pos``,
  ``ln_pre``, pre-LN blocks, the latent outputs, ``ln_post``;
- the **legacy reshape**: the contiguous ``[B, N, W]`` tensor is reinterpreted as ``[B, W, N, 1]``
  (memory reshape, not a transpose) before the 1x1 ``conv_out``, so each 1D token mixes one
  feature (and its aliases) of all N latent tokens;
- the quantiser L2-normalises token and codebook rows, takes the first argmin of
  ``|z|^2 + |e|^2 - 2 z.e`` and passes the straight-through value ``z + (e - z)``;
- the decoder sees only the first k tokens with positional rows ``0..k-1`` after 257 query tokens
  ``[class ; 256 x mask_token] + pos``; nothing fills the dropped tail.

The transformer block is ALIT's (same official names and maths: TiTok is ALIT's ancestor).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alit_eval.tokenizers.common.blocks import ResidualAttentionBlock, embedding_param, embedding_table
from alit_eval.tokenizers.one_d_piece.config import OneDPieceConfig


class TiTokEncoder(nn.Module):
    """Image ``[B,3,S,S]`` in [0,1] -> latent outputs ``[B, N, W]`` (pre ``ln_post``) and z ``[B, N, d]``."""

    def __init__(self, cfg: OneDPieceConfig) -> None:
        super().__init__()
        w = cfg.width
        self.num_latent_tokens = cfg.num_latent_tokens
        self.patch_embed = nn.Conv2d(3, w, cfg.patch_size, stride=cfg.patch_size)
        self.class_embedding = embedding_param(1, w, width=w)
        self.positional_embedding = embedding_param(cfg.num_2d + 1, w, width=w)
        self.latent_token_positional_embedding = embedding_param(cfg.num_latent_tokens, w, width=w)
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = nn.ModuleList(ResidualAttentionBlock(w, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.ln_post = nn.LayerNorm(w)
        self.conv_out = nn.Conv2d(w, cfg.token_size, 1)

    def forward(self, images: torch.Tensor, latent_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n = images.shape[0], self.num_latent_tokens
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # row-major 2D positions
        x = torch.cat([self.class_embedding.expand(b, 1, -1), x], dim=1) + self.positional_embedding
        lat = (latent_tokens + self.latent_token_positional_embedding).expand(b, -1, -1)
        x = self.ln_pre(torch.cat([x, lat], dim=1))
        for block in self.transformer:
            x, _ = block(x)
        latent = x[:, -n:]
        # Legacy reshape quirk: reinterpret memory, do not permute (§1.3).
        z = self.conv_out(self.ln_post(latent).contiguous().reshape(b, -1, n, 1))  # [B, d, N, 1]
        return latent, z.reshape(b, -1, n).transpose(1, 2)


class VectorQuantizer(nn.Module):
    """The 1D codebook (``quantize.embedding.weight``), L2-normalised nearest-code lookup."""

    def __init__(self, cfg: OneDPieceConfig) -> None:
        super().__init__()
        self.use_l2_norm = cfg.use_l2_norm
        self.embedding = embedding_table(cfg.codebook_size, cfg.token_size)

    def codebook(self) -> torch.Tensor:
        e = self.embedding.weight
        return F.normalize(e, dim=-1) if self.use_l2_norm else e

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z ``[B, N, d]`` -> straight-through quantised tokens ``[B, N, d]`` and indices ``[B, N]`` int64.

        Runs in float32 whatever the autocast state, as the official forward does.
        """
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            if self.use_l2_norm:
                z = F.normalize(z, dim=-1)
            e = self.codebook().float()
            flat = z.reshape(-1, z.shape[-1])
            d = flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2.0 * flat @ e.t()
            idx = d.argmin(dim=1).reshape(z.shape[:-1])
            q = e[idx]
            return z + (q - z), idx

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Normalised codebook rows ``[B, k, d]`` for indices ``[B, k]`` (the official decode_tokens path)."""
        return self.codebook()[indices]


class TiTokDecoder(nn.Module):
    """A prefix of k quantised tokens ``[B, k, d]`` -> code logits ``[B, g*g, C]`` over the pixel codebook."""

    def __init__(self, cfg: OneDPieceConfig) -> None:
        super().__init__()
        w = cfg.dec_width
        self.grid = cfg.grid
        self.decoder_embed = nn.Linear(cfg.token_size, w)
        self.class_embedding = embedding_param(1, w, width=w)
        self.positional_embedding = embedding_param(cfg.num_2d + 1, w, width=w)
        self.mask_token = embedding_param(1, 1, w, width=w)
        self.latent_token_positional_embedding = embedding_param(cfg.num_latent_tokens, w, width=w)
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = nn.ModuleList(
            ResidualAttentionBlock(w, cfg.dec_heads, cfg.mlp_ratio) for _ in range(cfg.dec_depth)
        )
        self.ln_post = nn.LayerNorm(w)
        self.ffn = nn.Sequential(nn.Conv2d(w, 2 * w, 1), nn.Tanh(), nn.Conv2d(2 * w, cfg.pixel_codebook_size, 1))

    def forward(self, tokens: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns logits ``[B, g*g, C]`` and per-layer head-averaged attention ``[B, 257+k, 257+k]``
        (empty unless `need_weights`)."""
        b, k, _ = tokens.shape
        n2d = self.grid * self.grid
        lat = self.decoder_embed(tokens) + self.latent_token_positional_embedding[:k]
        queries = torch.cat([self.class_embedding, self.mask_token.reshape(1, -1).expand(n2d, -1)])
        queries = queries + self.positional_embedding
        x = self.ln_pre(torch.cat([queries.unsqueeze(0).expand(b, -1, -1), lat], dim=1))
        weights = []
        for block in self.transformer:
            x, w = block(x, need_weights=need_weights)
            if need_weights:
                weights.append(w)
        x = self.ln_post(x[:, 1 : 1 + n2d])
        x = x.transpose(1, 2).reshape(b, -1, self.grid, self.grid)
        logits = self.ffn(x.contiguous())  # [B, C, g, g], the official layout
        return logits.flatten(2).transpose(1, 2), weights
