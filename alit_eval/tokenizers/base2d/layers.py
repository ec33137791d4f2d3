"""Convolutional building blocks shared by the VQGAN and KL-VAE base tokenizers.

Module names (`norm1`, `conv1`, `nin_shortcut`, `upsample.conv`, `q`/`k`/`v`/`proj_out`) follow the
official checkpoints so their state_dicts load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    # Both official bases use 32 groups with eps 1e-6 (taming/LDM convention). Small models need
    # fewer: with one or two channels per group a flat image loses its colour in the norm.
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """Pre-activation residual block: GN-swish-conv3x3, GN-swish-conv3x3, plus a shortcut.

    Args:
        bias: whether the 3x3 convs have biases (VQGAN: no, VAE: yes).
        shortcut_on_output: MaskGIT/MAGE quirk (alit_official.md §6.18): when channels change, the
            1x1 ``nin_shortcut`` is applied to the block's *output* and added to it
            (``h + nin(h)``, weight ``(out, out, 1, 1)``); the LDM VAE applies it to the input.
    """

    def __init__(self, c_in: int, c_out: int, *, bias: bool, shortcut_on_output: bool, groups: int = 32) -> None:
        super().__init__()
        self.norm1 = group_norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)
        self.norm2 = group_norm(c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias)
        self.shortcut_on_output = shortcut_on_output
        if c_in != c_out:
            src = c_out if shortcut_on_output else c_in
            self.nin_shortcut = nn.Conv2d(src, c_out, 1, bias=bias)
        else:
            self.nin_shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.nin_shortcut is None:
            return x + h
        if self.shortcut_on_output:
            return h + self.nin_shortcut(h)
        return self.nin_shortcut(x) + h


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 conv (both bases)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ConvDownsample(nn.Module):
    """LDM downsampling: asymmetric zero pad (right/bottom by one), then a stride-2 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1-conv projections (LDM VAE)."""

    def __init__(self, channels: int, groups: int = 32) -> None:
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(b, c, hh * ww).transpose(1, 2)
        k = self.k(h).reshape(b, c, hh * ww)
        v = self.v(h).reshape(b, c, hh * ww)
        attn = torch.softmax(torch.bmm(q, k) * (c ** -0.5), dim=2)  # [b, q, k]
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)
