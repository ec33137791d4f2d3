"""KL-16 VAE (the LDM AutoencoderKL as used by MAR) as used by ALIT, inference only.

ALIT reads ``posterior.sample() * 0.2325`` from images in [0,1] (not [-1,1], unlike MAR), and decodes
its predicted codes *without* dividing by 0.2325 (alit_official.md §1.1). The posterior noise is a
standard normal draw supplied by the caller, so the rollout's randomness policy decides its source.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alit_eval.tokenizers.base2d.config import Base2DConfig
from alit_eval.tokenizers.base2d.layers import (
    AttnBlock,
    ConvDownsample,
    ResBlock,
    Upsample,
    group_norm,
)


def _res(c_in: int, c_out: int, groups: int = 32) -> ResBlock:
    return ResBlock(c_in, c_out, bias=True, shortcut_on_output=False, groups=groups)


class _Level(nn.Module):
    def __init__(self, blocks: list[nn.Module], attn: list[nn.Module]) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attn)

    def run(self, h: torch.Tensor) -> torch.Tensor:
        for j, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[j](h)
        return h


class _Mid(nn.Module):
    def __init__(self, channels: int, groups: int = 32) -> None:
        super().__init__()
        self.block_1 = _res(channels, channels, groups)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = _res(channels, channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class VAEEncoder(nn.Module):
    def __init__(self, cfg: Base2DConfig) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, cfg.ch, 3, padding=1)
        in_mult = (1,) + tuple(cfg.ch_mult)
        levels = []
        c_out = cfg.ch
        for i, mult in enumerate(cfg.ch_mult):
            c_in, c_out = cfg.ch * in_mult[i], cfg.ch * mult
            blocks = [_res(c_in if j == 0 else c_out, c_out, cfg.norm_groups) for j in range(cfg.num_res_blocks)]
            attn = [AttnBlock(c_out, cfg.norm_groups) for _ in blocks] if i in cfg.attn_levels else []
            level = _Level(blocks, attn)
            if i != len(cfg.ch_mult) - 1:
                level.downsample = ConvDownsample(c_out)
            levels.append(level)
        self.down = nn.ModuleList(levels)
        self.mid = _Mid(c_out, cfg.norm_groups)
        self.norm_out = group_norm(c_out, cfg.norm_groups)
        self.conv_out = nn.Conv2d(c_out, 2 * cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for i, level in enumerate(self.down):
            h = level.run(h)
            if i != len(self.down) - 1:
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VAEDecoder(nn.Module):
    def __init__(self, cfg: Base2DConfig) -> None:
        super().__init__()
        c = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, c, 3, padding=1)
        self.mid = _Mid(c, cfg.norm_groups)
        levels: list[_Level] = []
        for i in reversed(range(len(cfg.ch_mult))):
            c_out = cfg.ch * cfg.ch_mult[i]
            # The LDM decoder has one more res block per level than the encoder.
            blocks = [_res(c if j == 0 else c_out, c_out, cfg.norm_groups) for j in range(cfg.num_res_blocks + 1)]
            level = _Level(blocks, [])
            if i != 0:
                level.upsample = Upsample(c_out)
            levels.insert(0, level)
            c = c_out
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(c, cfg.norm_groups)
        self.conv_out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            h = self.up[i].run(h)
            if i != 0:
                h = self.up[i].upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class KLVAE(nn.Module):
    """Encoder, decoder and the 1x1 quant convs of the KL-VAE (keys under ``base_tokenizer.vae``)."""

    def __init__(self, cfg: Base2DConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = VAEEncoder(cfg)
        self.decoder = VAEDecoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior mean and std ``[B, embed_dim, h, w]`` for images in [0,1]."""
        moments = self.quant_conv(self.encoder(images))
        mean, logvar = torch.chunk(moments, 2, dim=1)
        std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))
        return mean, std

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Decode ``[B, embed_dim, h, w]`` codes to unclamped ``[B,3,H,W]`` pixels."""
        return self.decoder(self.post_quant_conv(code))
