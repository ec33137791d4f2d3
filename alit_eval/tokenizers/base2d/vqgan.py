"""MaskGIT-style VQGAN (MAGE's PyTorch port) as used by ALIT, inference only.

Quirks reproduced (alit_official.md §1.1, §6.18): bias-less res-block convs and encoder conv_in,
average-pool downsampling without parameters, `nin_shortcut` applied to the block output, a 1x1
encoder conv_out, no quant_conv/post_quant_conv. Images go in as [0,1] without normalisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alit_eval.tokenizers.base2d.config import Base2DConfig
from alit_eval.tokenizers.base2d.layers import ResBlock, Upsample, group_norm
from alit_eval.tokenizers.common.blocks import embedding_table


def _res(c_in: int, c_out: int, groups: int = 32) -> ResBlock:
    return ResBlock(c_in, c_out, bias=False, shortcut_on_output=True, groups=groups)


class _Level(nn.Module):
    def __init__(self, blocks: list[nn.Module], upsample: nn.Module | None = None) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if upsample is not None:
            self.upsample = upsample


class _Mid(nn.Module):
    def __init__(self, channels: int, groups: int = 32) -> None:
        super().__init__()
        self.block_1 = _res(channels, channels, groups)
        self.block_2 = _res(channels, channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.block_1(x))


class VQGANEncoder(nn.Module):
    def __init__(self, cfg: Base2DConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, cfg.ch, 3, padding=1, bias=False)
        in_mult = (1,) + tuple(cfg.ch_mult)
        levels = []
        c_out = cfg.ch
        for i, mult in enumerate(cfg.ch_mult):
            c_in, c_out = cfg.ch * in_mult[i], cfg.ch * mult
            blocks = [_res(c_in if j == 0 else c_out, c_out, cfg.norm_groups) for j in range(cfg.num_res_blocks)]
            levels.append(_Level(blocks))
        self.down = nn.ModuleList(levels)
        self.mid = _Mid(c_out, cfg.norm_groups)
        self.norm_out = group_norm(c_out, cfg.norm_groups)
        self.conv_out = nn.Conv2d(c_out, cfg.z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for i, level in enumerate(self.down):
            for block in level.block:
                h = block(h)
            if i != len(self.down) - 1:
                h = F.avg_pool2d(h, kernel_size=2, stride=2)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VQGANDecoder(nn.Module):
    def __init__(self, cfg: Base2DConfig) -> None:
        super().__init__()
        c = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, c, 3, padding=1)
        self.mid = _Mid(c, cfg.norm_groups)
        levels: list[_Level] = []
        for i in reversed(range(len(cfg.ch_mult))):
            c_out = cfg.ch * cfg.ch_mult[i]
            blocks = [_res(c if j == 0 else c_out, c_out, cfg.norm_groups) for j in range(cfg.num_res_blocks)]
            levels.insert(0, _Level(blocks, Upsample(c_out) if i != 0 else None))
            c = c_out
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(c, cfg.norm_groups)
        self.conv_out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            for block in level.block:
                h = block(h)
            if i != 0:
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class _Codebook(nn.Module):
    def __init__(self, n: int, dim: int) -> None:
        super().__init__()
        self.embedding = embedding_table(n, dim)


class VQGAN(nn.Module):
    """Encoder, decoder and codebook of the base VQGAN (keys under ``base_tokenizer.vqgan``)."""

    def __init__(self, cfg: Base2DConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = VQGANEncoder(cfg)
        self.decoder = VQGANDecoder(cfg)
        self.quantize = _Codebook(cfg.n_embed, cfg.embed_dim)

    @property
    def codebook(self) -> torch.Tensor:
        return self.quantize.embedding.weight

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the continuous pre-quantisation features and their nearest code indices.

        Args:
            images: ``[B,3,H,W]`` float in [0,1].

        Returns:
            ``z`` ``[B, C, h, w]`` (what ALIT reads) and ``indices`` ``[B, h*w]`` int64, row-major.
        """
        z = self.encoder(images)
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        e = self.codebook
        # Same expansion as taming's VectorQuantizer2, so near-ties resolve the same way.
        d = flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2.0 * flat @ e.t()
        return z, d.argmin(dim=1).reshape(z.shape[0], -1)

    def decode_soft(self, probs: torch.Tensor, grid: int) -> torch.Tensor:
        """Decode pixels from per-position code probabilities (ALIT's soft-code path).

        Args:
            probs: ``[B, grid*grid, n_embed]`` softmax of the ALIT decoder logits.

        Returns:
            ``[B,3,H,W]`` unclamped reconstruction.
        """
        soft = probs @ self.codebook  # [B, N, C]
        soft = soft.reshape(probs.shape[0], grid, grid, -1).permute(0, 3, 1, 2)
        return self.decoder(soft)
