"""Configuration of the base 2D tokenizers (VQGAN and KL-VAE) and its inference from weights."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Base2DConfig:
    """Geometry of a base 2D tokenizer.

    Defaults are the official ALIT bases (alit_official.md §1.1): ch 128, ch_mult (1,1,2,2,4), two res
    blocks per level, so a 256x256 image becomes a 16x16 grid.

    Attributes:
        kind: ``"vqgan"`` (MaskGIT/MAGE VQGAN) or ``"vae"`` (LDM KL-VAE as used by MAR).
        ch: base channel count.
        ch_mult: channel multiplier per resolution level; ``len(ch_mult) - 1`` halvings.
        num_res_blocks: residual blocks per encoder level (the VAE decoder uses one more).
        z_channels: encoder output channels (VQGAN: code dim; VAE: latent channels).
        embed_dim: code dimension seen by ALIT (VQGAN 256, VAE 16).
        n_embed: VQGAN codebook size (unused for the VAE).
        attn_levels: VAE encoder levels with self-attention after each res block.
        vae_scale: the constant ALIT multiplies the VAE posterior sample by (0.2325).
        norm_groups: GroupNorm groups (32 in every official base; not visible in the weights).
    """

    kind: str = "vqgan"
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 256
    embed_dim: int = 256
    n_embed: int = 1024
    attn_levels: tuple[int, ...] = field(default=(4,))
    vae_scale: float = 0.2325
    norm_groups: int = 32

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @classmethod
    def official(cls, kind: str) -> "Base2DConfig":
        if kind == "vqgan":
            return cls(kind="vqgan")
        if kind == "vae":
            return cls(kind="vae", z_channels=16, embed_dim=16, n_embed=0)
        raise ValueError(f"unknown base tokenizer kind {kind!r}; expected 'vqgan' or 'vae'")


def infer_base_config(sd: Mapping[str, "object"], prefix: str = "base_tokenizer.") -> Base2DConfig:
    """Infer a `Base2DConfig` from state_dict shapes (keys under ``base_tokenizer.vqgan/vae``)."""
    if any(k.startswith(prefix + "vqgan.") for k in sd):
        kind = "vqgan"
    elif any(k.startswith(prefix + "vae.") for k in sd):
        kind = "vae"
    else:
        raise KeyError("no base_tokenizer.vqgan.* or base_tokenizer.vae.* keys")
    p = f"{prefix}{kind}.encoder."
    ch = int(sd[p + "conv_in.weight"].shape[0])
    levels = sorted({int(m.group(1)) for k in sd if (m := re.match(re.escape(p) + r"down\.(\d+)\.", k))})
    ch_mult = tuple(int(sd[f"{p}down.{i}.block.0.conv2.weight"].shape[0]) // ch for i in levels)
    blocks = {int(m.group(1)) for k in sd if (m := re.match(re.escape(p) + r"down\.0\.block\.(\d+)\.", k))}
    attn = tuple(i for i in levels if f"{p}down.{i}.attn.0.q.weight" in sd)
    if kind == "vqgan":
        z = int(sd[p + "conv_out.weight"].shape[0])
        n_embed, embed_dim = (int(s) for s in sd[f"{prefix}vqgan.quantize.embedding.weight"].shape)
    else:
        z = int(sd[f"{prefix}vae.decoder.conv_in.weight"].shape[1])
        embed_dim = int(sd[f"{prefix}vae.post_quant_conv.weight"].shape[1])
        n_embed = 0
    return Base2DConfig(
        kind=kind, ch=ch, ch_mult=ch_mult, num_res_blocks=len(blocks), z_channels=z,
        embed_dim=embed_dim, n_embed=n_embed, attn_levels=attn,
    )
