"""The pixel path of One-D-Piece / TiTok stage-2 models: soft code and MaskGIT-VQGAN pixel decoder.

The decoder's logits over the 1024 MaskGIT-VQGAN codes become a soft code, the softmax mixture of the
codebook rows (``pixel_quantize.embedding.weight``; no argmax), which the pixel decoder (keys
``pixel_decoder.*``) turns into pixels.

Layout (one_d_piece_official.md §1.5): ``conv_in`` 3x3 with bias, ``mid.0``/``mid.1`` res blocks,
levels ``up.{L-1}`` ... ``up.0`` each with ``block.{j}`` and, except level 0, a nearest x2 upsample
then ``up.{i}.upsample_conv``; ``norm_out`` -> SiLU -> ``conv_out``. Res blocks have bias-less convs
and apply the 1x1 ``nin_shortcut`` to the block *output* when channels change (the MaskGIT quirk the
base2d VQGAN shares, so its `ResBlock` is reused). No attention. The names differ from the ALIT base
VQGAN (``mid.block_1``, ``upsample.conv``), hence this separate module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alit_eval.tokenizers.base2d.layers import ResBlock, group_norm
from alit_eval.tokenizers.common.blocks import embedding_table
from alit_eval.tokenizers.one_d_piece.config import OneDPieceConfig


def _res(c_in: int, c_out: int) -> ResBlock:
    return ResBlock(c_in, c_out, bias=False, shortcut_on_output=True)


class _UpLevel(nn.Module):
    def __init__(self, c_in: int, c_out: int, blocks: int, upsample: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList(_res(c_in if j == 0 else c_out, c_out) for j in range(blocks))
        self.upsample_conv = nn.Conv2d(c_out, c_out, 3, padding=1) if upsample else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            h = block(h)
        if self.upsample_conv is not None:
            h = self.upsample_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return h


class PixelCodebook(nn.Module):
    """The MaskGIT-VQGAN codebook (``pixel_quantize.embedding.weight``) and the soft-code mixture."""

    def __init__(self, cfg: OneDPieceConfig) -> None:
        super().__init__()
        self.grid = cfg.grid
        self.embedding = embedding_table(cfg.pixel_codebook_size, cfg.pixel_z_channels)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, g*g, C]`` -> soft code ``[B, z, g, g]``: softmax over the C codes, then the
        probability-weighted sum of their rows (official: no argmax, no sampling)."""
        soft = torch.softmax(logits.float(), dim=-1) @ self.embedding.weight.float()
        return soft.reshape(logits.shape[0], self.grid, self.grid, -1).permute(0, 3, 1, 2)


class PixelDecoder(nn.Module):
    """Soft code ``[B, z, g, g]`` -> unclamped pixels ``[B, 3, g*2^(L-1), g*2^(L-1)]``."""

    def __init__(self, cfg: OneDPieceConfig) -> None:
        super().__init__()
        h, mult = cfg.pixel_hidden, cfg.pixel_channel_mult
        top = h * mult[-1]
        self.conv_in = nn.Conv2d(cfg.pixel_z_channels, top, 3, padding=1)
        self.mid = nn.ModuleList([_res(top, top), _res(top, top)])
        levels = []
        for i in range(len(mult)):
            c_in = h * (mult[i + 1] if i + 1 < len(mult) else mult[-1])
            levels.append(_UpLevel(c_in, h * mult[i], cfg.pixel_res_blocks, upsample=i != 0))
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(h * mult[0])
        self.conv_out = nn.Conv2d(h * mult[0], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for i in reversed(range(len(self.up))):
            h = self.up[i](h)
        return self.conv_out(F.silu(self.norm_out(h)))
