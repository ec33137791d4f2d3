"""The KL-VAE FlexTok runs in front of and behind its tokenizer, with diffusers' parameter names.

The official wrapper (``StableDiffusionVAE``) builds a diffusers ``AutoencoderKL`` (4 down/up blocks of
``layers_per_block`` resnets, mid block with one single-head self-attention, GroupNorm eps 1e-6,
quant/post-quant 1x1 convs, no shift factor); its weights live under ``vae.vae.*`` in the FlexTok
files. This is a plain re-implementation of that computation so alit-eval does not depend on
diffusers (flextok_official.md §2.2, §2.8):

- encode: moments = quant_conv(encoder(x)); mean, logvar = split; logvar clamped to [-30, 20];
  z = mean (or mean + exp(logvar/2)·ε when sampling the posterior); latents = z · scaling_factor.
- decode: images = decoder(post_quant_conv(latents / scaling_factor)), not clamped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1e-6


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, plus a 1x1 shortcut when the width changes."""

    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=_EPS)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=_EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class SelfAttention(nn.Module):
    """Single-head spatial self-attention of the mid block (scale 1/sqrt(C)), residual."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=_EPS)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)
        q, k, v = (proj(seq).unsqueeze(1) for proj in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v).squeeze(1)
        out = self.to_out[0](out).transpose(1, 2).reshape(b, c, h, w)
        return out + x


class MidBlock(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups) for _ in range(2)])
        self.attentions = nn.ModuleList([SelfAttention(channels, groups)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class _Conv(nn.Module):
    """Holder giving the ``downsamplers.0.conv`` / ``upsamplers.0.conv`` names."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels, 3, stride=stride, padding=0 if stride == 2 else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:  # asymmetric padding (right/bottom only), then a stride-2 conv
            return self.conv(F.pad(x, (0, 1, 0, 1)))
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Stage(nn.Module):
    def __init__(self, cin: int, cout: int, n: int, groups: int, resample: int | None) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(cin if i == 0 else cout, cout, groups) for i in range(n)])
        name = "downsamplers" if resample == 2 else "upsamplers"
        setattr(self, name, nn.ModuleList([_Conv(cout, resample)]) if resample else None)
        self._resample = name if resample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resnets:
            x = block(x)
        return getattr(self, self._resample)[0](x) if self._resample else x


class Encoder(nn.Module):
    def __init__(self, channels: tuple[int, ...], layers: int, groups: int, latent: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        last = len(channels) - 1
        self.down_blocks = nn.ModuleList([
            _Stage(channels[max(i - 1, 0)], c, layers, groups, 2 if i < last else None) for i, c in enumerate(channels)])
        self.mid_block = MidBlock(channels[-1], groups)
        self.conv_norm_out = nn.GroupNorm(groups, channels[-1], eps=_EPS)
        self.conv_out = nn.Conv2d(channels[-1], 2 * latent, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for stage in self.down_blocks:
            x = stage(x)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(x))))


class Decoder(nn.Module):
    def __init__(self, channels: tuple[int, ...], layers: int, groups: int, latent: int) -> None:
        super().__init__()
        rev = tuple(reversed(channels))
        self.conv_in = nn.Conv2d(latent, rev[0], 3, padding=1)
        self.mid_block = MidBlock(rev[0], groups)
        last = len(rev) - 1
        self.up_blocks = nn.ModuleList([
            _Stage(rev[max(i - 1, 0)], c, layers + 1, groups, 1 if i < last else None) for i, c in enumerate(rev)])
        self.conv_norm_out = nn.GroupNorm(groups, channels[0], eps=_EPS)
        self.conv_out = nn.Conv2d(channels[0], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for stage in self.up_blocks:
            x = stage(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL(nn.Module):
    """Encoder/decoder pair with diffusers' ``AutoencoderKL`` parameter names.

    Args:
        channels: ``block_out_channels``; layers: ``layers_per_block``; groups: GroupNorm groups;
        latent: latent channels.
    """

    def __init__(self, channels: tuple[int, ...], layers: int, groups: int, latent: int) -> None:
        super().__init__()
        self.encoder = Encoder(channels, layers, groups, latent)
        self.decoder = Decoder(channels, layers, groups, latent)
        self.quant_conv = nn.Conv2d(2 * latent, 2 * latent, 1)
        self.post_quant_conv = nn.Conv2d(latent, latent, 1)

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[B,3,H,W]`` in [-1,1] -> (mean, logvar) ``[B,C,H/f,W/f]``, logvar clamped to [-30, 20]."""
        mean, logvar = self.quant_conv(self.encoder(images)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latents ``[B,C,h,w]`` -> images ``[B,3,H,W]`` (nominally [-1,1], not clamped)."""
        return self.decoder(self.post_quant_conv(z))


class VaeWrapper(nn.Module):
    """Holds the VAE under the official ``vae.vae`` prefix and applies the scaling factor."""

    def __init__(self, channels: tuple[int, ...], layers: int, groups: int, latent: int, scaling: float) -> None:
        super().__init__()
        self.vae = AutoencoderKL(channels, layers, groups, latent)
        self.scaling_factor = float(scaling)

    def encode(self, images: torch.Tensor, eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Images in [-1,1] -> posterior mean/logvar and latents (× scaling factor; ε given = sampled)."""
        mean, logvar = self.vae.posterior(images)
        z = mean if eps is None else mean + torch.exp(0.5 * logvar) * eps
        return {"vae_posterior_mean": mean, "vae_posterior_logvar": logvar, "vae_latents": z * self.scaling_factor}

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images (divided by the scaling factor first), not clamped."""
        return self.vae.decode(latents / self.scaling_factor)
