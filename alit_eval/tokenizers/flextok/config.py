"""FlexTok configuration: the frozen dataclass, its bounds, and the presets of every released variant.

Facts (flextok_official.md §2, §5.2): a diffusers-layout KL-VAE (f8, 16 latent channels for the
released models), a register encoder of width W_e and depth D_e over 2x2 latent patches plus 256
registers, FSQ with levels [8, 8, 8, 5, 5, 5], and a rectified-flow decoder of width W_d and depth D_d
with adaLN expansion 2. Head dims are not stored in the weights (64 in the released models, inferred);
the VAE scaling factor, posterior sampling and the null-condition class are unknown for the releases
and are read from the file's own config (`official_config.py`), never assumed.

Every field is bounded (`__post_init__`), so a hostile config is refused before anything is built.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from alit_eval.errors import ConfigError
from alit_eval.tokenizers.validate import check_fields, safe_text

NULL_CONDS = ("zero", "learned")
ENC_MASKS = ("causal_last", "full")
MAX_CODEBOOK = 1 << 31  # tokens are int64, but an FSQ with more codes than this is not a tokenizer

# Released variants: (encoder depth, decoder depth, train set, hub repo). Widths are 64 x depth
# (secondary/inferred, §5.2), head dim 64 (inferred).
RELEASES: dict[str, tuple[int, int, str, str]] = {
    "flextok_d12_d12_in1k": (12, 12, "imagenet1k", "EPFL-VILAB/flextok_d12_d12_in1k"),
    "flextok_d18_d18_in1k": (18, 18, "imagenet1k", "EPFL-VILAB/flextok_d18_d18_in1k"),
    "flextok_d18_d28_in1k": (18, 28, "imagenet1k", "EPFL-VILAB/flextok_d18_d28_in1k"),
    "flextok_d18_d28_dfn": (18, 28, "dfn", "EPFL-VILAB/flextok_d18_d28_dfn"),
}

# The config's field table (kinds of `validate.check_value`): checked before anything is built, for
# alit-eval's own files and for configs read from the official metadata alike.
FIELDS: dict[str, tuple[Any, ...]] = {
    "family": ("choice", ("flextok",), None),
    "scaling_factor": ("float", 1e-6, 1e6),
    "sample_posterior": ("bool", 0, 1),
    "null_cond": ("choice", NULL_CONDS, None),
    "image_size": ("int", 16, 4096),
    "vae_channels": ("ints", 1, 8192),
    "vae_layers_per_block": ("int", 1, 8),
    "vae_norm_groups": ("int", 1, 512),
    "latent_channels": ("int", 1, 256),
    "patch_size": ("int", 1, 16),
    "posemb_grid": ("int", 1, 256),
    "enc_width": ("int", 8, 8192),
    "enc_depth": ("int", 1, 128),
    "enc_head_dim": ("int", 1, 1024),
    "enc_mask": ("choice", ENC_MASKS, None),
    "dec_width": ("int", 8, 8192),
    "dec_depth": ("int", 1, 128),
    "dec_head_dim": ("int", 1, 1024),
    "adaln_expansion": ("int", 1, 2),
    "mlp_ratio": ("float", 0.25, 16.0),
    "n_registers": ("int", 1, 4096),
    "fsq_levels": ("ints", 2, 4096),
    "freq_size": ("int", 2, 8192),
    "max_timestep": ("float", 1e-6, 1e6),
    "preset": ("choice?", tuple(RELEASES), None),
}


@dataclass(frozen=True)
class FlexTokConfig:
    """Everything needed to build a FlexTok tokenizer.

    Attributes:
        image_size: pixel side (a multiple of 8·patch_size; at most 8·patch_size·posemb_grid).
        vae_channels: the VAE's ``block_out_channels`` (released: 128, 256, 512, 512).
        vae_layers_per_block, vae_norm_groups: the diffusers ``AutoencoderKL`` settings.
        latent_channels: C, the VAE latent channels (16 for the released models).
        scaling_factor: latents = z · scaling_factor (read from the file's config; no default).
        sample_posterior: encode with mean + std·ε (random) instead of the posterior mean.
        patch_size: latent patchification (2).
        posemb_grid: side of the stored sin-cos tables (16); smaller grids use their top-left part.
        enc_width, enc_depth, enc_head_dim, enc_mask: register encoder (mask ``causal_last`` or ``full``).
        dec_width, dec_depth, dec_head_dim: flow decoder; ``adaln_expansion`` 2 = separate
            modulations for patch and register tokens.
        mlp_ratio: gated-MLP hidden = int(2·mlp_ratio·W/3).
        n_registers: registers = maximal prefix length (256).
        fsq_levels: FSQ levels per dimension ([8, 8, 8, 5, 5, 5]).
        null_cond: ``zero`` (all registers zeroed) or ``learned`` (one learned vector) in the
            unconditional pass.
        freq_size, max_timestep: the time embedding (frequency size 256, max timestep 1.0).
        preset: the released variant this config is, if any.
    """

    scaling_factor: float
    sample_posterior: bool
    null_cond: str
    image_size: int = 256
    vae_channels: tuple[int, ...] = (128, 256, 512, 512)
    vae_layers_per_block: int = 2
    vae_norm_groups: int = 32
    latent_channels: int = 16
    patch_size: int = 2
    posemb_grid: int = 16
    enc_width: int = 1152
    enc_depth: int = 18
    enc_head_dim: int = 64
    enc_mask: str = "causal_last"
    dec_width: int = 1792
    dec_depth: int = 28
    dec_head_dim: int = 64
    adaln_expansion: int = 2
    mlp_ratio: float = 4.0
    n_registers: int = 256
    fsq_levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    freq_size: int = 256
    max_timestep: float = 1.0
    preset: str | None = None

    def __post_init__(self) -> None:
        check_fields({k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}, FIELDS,
                     "FlexTok ")
        object.__setattr__(self, "vae_channels", tuple(self.vae_channels))
        object.__setattr__(self, "fsq_levels", tuple(self.fsq_levels))
        if not self.vae_channels or not self.fsq_levels:
            raise ConfigError("FlexTok config vae_channels and fsq_levels must not be empty")
        if any(c % self.vae_norm_groups for c in self.vae_channels):
            raise ConfigError(f"FlexTok VAE channels {list(self.vae_channels)} are not divisible by its "
                              f"{self.vae_norm_groups} norm groups")
        if math.prod(self.fsq_levels) > MAX_CODEBOOK:
            raise ConfigError(f"FlexTok FSQ levels {list(self.fsq_levels)} give more than 2^31 codes")
        for part in ("enc", "dec"):
            w, h = getattr(self, f"{part}_width"), getattr(self, f"{part}_head_dim")
            if w % h:
                raise ConfigError(f"FlexTok {part}_width {w} is not divisible by {part}_head_dim {h}")
        down = self.vae_factor * self.patch_size
        if self.image_size % down or self.image_size // down > self.posemb_grid:
            raise ConfigError(
                f"FlexTok image_size {self.image_size} must be a multiple of {down} and at most "
                f"{down * self.posemb_grid} (the sin-cos tables are {self.posemb_grid}x{self.posemb_grid}, cropped)"
            )

    # -- derived sizes ---------------------------------------------------------------------------
    @property
    def vae_factor(self) -> int:
        """Pixel downsampling of the VAE (one factor 2 per block but the last)."""
        return 2 ** (len(self.vae_channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.vae_factor

    @property
    def grid(self) -> int:
        """Patch grid side (16 at 256 px)."""
        return self.latent_size // self.patch_size

    @property
    def n_patches(self) -> int:
        return self.grid * self.grid

    @property
    def patch_dim(self) -> int:
        return self.patch_size * self.patch_size * self.latent_channels

    @property
    def fsq_dim(self) -> int:
        return len(self.fsq_levels)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.fsq_levels)

    def mlp_hidden(self, width: int) -> int:
        # The official gated MLP: int(2 * ratio * W / 3) (2048 for 768, 3072 for 1152, 4778 for 1792).
        return int(2 * int(self.mlp_ratio * width) / 3)

    @property
    def budgets(self) -> tuple[int, ...]:
        """Prefix lengths 1..n_registers."""
        return tuple(range(1, self.n_registers + 1))

    # -- (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["vae_channels"], out["fsq_levels"] = list(self.vae_channels), list(self.fsq_levels)
        return {"family": "flextok", **out}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FlexTokConfig":
        """From `to_dict` output (alit-eval's own files); unknown fields are refused."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"a FlexTok config must be a mapping, got {type(d).__name__}")
        check_fields(d, FIELDS)
        d = {k: v for k, v in d.items() if k != "family"}
        for req in ("scaling_factor", "sample_posterior", "null_cond"):
            if req not in d:
                raise ConfigError(f"the FlexTok config lacks {req} (it cannot be inferred from the weights)")
        return cls(**d)

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> "FlexTokConfig":
        """A released variant's architecture. The settings the reference marks unknown
        (``scaling_factor``, ``sample_posterior``, ``null_cond``) must be given as overrides: the real
        values travel inside the released files, and guessing them would silently change numbers."""
        if preset not in RELEASES:
            raise ConfigError(f"unknown FlexTok preset {safe_text(preset, 40)!r}; valid: {', '.join(RELEASES)}")
        missing = [k for k in ("scaling_factor", "sample_posterior", "null_cond") if k not in overrides]
        if missing:
            raise ConfigError(f"FlexTok preset {preset} needs {', '.join(missing)} (unknown for the releases; they "
                              "are read from the file's config when loading it)")
        d_enc, d_dec, _, _ = RELEASES[preset]
        kw: dict[str, Any] = dict(enc_width=64 * d_enc, enc_depth=d_enc, dec_width=64 * d_dec, dec_depth=d_dec,
                                  preset=preset)
        kw.update(overrides)
        return cls(**kw)
