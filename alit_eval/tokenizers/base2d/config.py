"""Configuration of the base 2D tokenizers (VQGAN and KL-VAE) and its inference from weights."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from alit_eval.errors import ConfigError

# The base geometry the official code builds (alit_official.md §1.1); its GroupNorms always have 32
# groups, so a file in the official layout with this geometry needs no stored group count.
OFFICIAL_CH_MULT = (1, 1, 2, 2, 4)
OFFICIAL_RES_BLOCKS = 2

# Types and sane bounds of every field (alit_eval.tokenizers.validate.check_fields), checked before use.
FIELDS: dict[str, tuple[Any, ...]] = {
    "kind": ("choice", ("vqgan", "vae"), None),
    "ch": ("int", 1, 2048),
    "ch_mult": ("ints", 1, 64),
    "num_res_blocks": ("int", 1, 16),
    "z_channels": ("int", 1, 4096),
    "embed_dim": ("int", 1, 4096),
    "n_embed": ("int", 0, 1 << 20),
    "attn_levels": ("ints", 0, 7),
    "vae_scale": ("float", 1e-6, 1e3),
    "norm_groups": ("int", 1, 2048),
}


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

    def __post_init__(self) -> None:
        from alit_eval.tokenizers.validate import check_fields

        check_fields(dataclasses.asdict(self), FIELDS, "base.")
        for name in ("ch_mult", "attn_levels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for c in {self.ch * m for m in (1, *self.ch_mult)}:  # every GroupNorm's channel count
            if c % self.norm_groups:
                raise ConfigError(
                    f"config field base.norm_groups = {self.norm_groups} does not divide the {c} channels of a "
                    f"base level (ch {self.ch}, ch_mult {self.ch_mult})"
                )

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


def base_geometry(sd: Mapping[str, Any], prefix: str = "base_tokenizer.") -> dict[str, Any]:
    """The base config fields the state_dict shapes show (all but ``vae_scale`` and ``norm_groups``).

    Raises:
        KeyError: when the base tokenizer's keys are missing.
    """
    if any(k.startswith(prefix + "vqgan.") for k in sd):
        kind = "vqgan"
    elif any(k.startswith(prefix + "vae.") for k in sd):
        kind = "vae"
    else:
        raise KeyError("no base_tokenizer.vqgan.* or base_tokenizer.vae.* keys")
    p = f"{prefix}{kind}.encoder."
    ch = int(sd[p + "conv_in.weight"].shape[0])
    if ch < 1:
        raise ConfigError(f"config field base.ch = {ch} (from {p}conv_in.weight) is out of range (allowed 1..2048)")
    levels = sorted({int(m.group(1)) for k in sd if (m := re.match(re.escape(p) + r"down\.(\d{1,3})\.", k))})
    ch_mult = tuple(int(sd[f"{p}down.{i}.block.0.conv2.weight"].shape[0]) // ch for i in levels)
    blocks = {int(m.group(1)) for k in sd if (m := re.match(re.escape(p) + r"down\.0\.block\.(\d{1,3})\.", k))}
    attn = tuple(i for i in levels if f"{p}down.{i}.attn.0.q.weight" in sd)
    if kind == "vqgan":
        z = int(sd[p + "conv_out.weight"].shape[0])
        n_embed, embed_dim = (int(s) for s in sd[f"{prefix}vqgan.quantize.embedding.weight"].shape)
    else:
        z = int(sd[f"{prefix}vae.decoder.conv_in.weight"].shape[1])
        embed_dim = int(sd[f"{prefix}vae.post_quant_conv.weight"].shape[1])
        n_embed = 0
    return dict(
        kind=kind, ch=ch, ch_mult=ch_mult, num_res_blocks=len(blocks), z_channels=z,
        embed_dim=embed_dim, n_embed=n_embed, attn_levels=attn,
    )


def infer_base_config(
    sd: Mapping[str, Any], prefix: str = "base_tokenizer.", *, norm_groups: int | None = None
) -> Base2DConfig:
    """Infer a `Base2DConfig` from state_dict shapes (keys under ``base_tokenizer.vqgan/vae``).

    Args:
        norm_groups: the GroupNorm group count, which the weights do not show. ``None`` accepts the
            official 32 only for the official geometry (ch_mult (1,1,2,2,4), two res blocks per level)
            and otherwise refuses, naming the field, instead of silently building a different model.

    Raises:
        KeyError: when the base tokenizer's keys are missing.
        ConfigError: an invalid geometry, or an unknowable group count.
    """
    geometry = base_geometry(sd, prefix)
    if norm_groups is None:
        if geometry["ch_mult"] != OFFICIAL_CH_MULT or geometry["num_res_blocks"] != OFFICIAL_RES_BLOCKS:
            raise ConfigError(
                f"the checkpoint does not record base.norm_groups (GroupNorm groups, not visible in the weights) "
                f"and its base (ch_mult {geometry['ch_mult']}, num_res_blocks {geometry['num_res_blocks']}) is not the "
                "official geometry that implies 32; load the alit-eval .safetensors it came from, or add "
                "norm_groups to the checkpoint's args"
            )
        norm_groups = 32
    return Base2DConfig(**geometry, norm_groups=norm_groups)


def observed_base_fields(sd: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """Base config values the tensors show, as ``base.field -> (value, evidence)`` (empty if unreadable)."""
    try:
        geometry = base_geometry(sd)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return {}  # the strict key check after the build names what is missing
    if geometry["kind"] == "vae":
        geometry.pop("n_embed")  # unused by the VAE
    else:
        geometry.pop("attn_levels")  # the VQGAN port has no attention blocks
    return {f"base.{k}": (v, f"base_tokenizer.{geometry['kind']}.* shapes") for k, v in geometry.items()}
