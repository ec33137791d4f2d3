"""One-D-Piece / TiTok configuration: the dataclass, presets of every released variant, inference.

Facts (one_d_piece_official.md §1.1, §2 and the key list next to it): encoder and decoder sizes
come from a fixed table (small 512/8/8, base 768/12/12, large 1024/24/16, head dim 64); every
released model has 256x256 images, patch 16, a 4096 x 12 L2-normalised VQ codebook, and a
MaskGIT-VQGAN pixel decoder (hidden 128, channel_mult (1,1,2,2,4), 1024 x 256 pixel codebook).
One-D-Piece has N = 256 latent tokens and decodes any prefix 1..N; plain TiTok (S-128, B-64, L-32)
is the same computation but the official code only decodes all N tokens
(``strict_length_assertion``), so its only budget is N.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Mapping

FAMILIES = ("one_d_piece", "titok")

# The official size table (TiTokEncoder / TiTokDecoder): width, layers, heads.
SIZES: dict[str, tuple[int, int, int]] = {
    "small": (512, 8, 8),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}

# Released variants: (family, size, latent tokens, official yaml).
PRESETS: dict[str, tuple[str, str, int, str]] = {
    "one_d_piece_s256": ("one_d_piece", "small", 256, "configs/one-d-piece_s256.yaml"),
    "one_d_piece_b256": ("one_d_piece", "base", 256, "configs/one-d-piece_b256.yaml"),
    "one_d_piece_l256": ("one_d_piece", "large", 256, "configs/one-d-piece_l256.yaml"),
    "titok_s128": ("titok", "small", 128, "configs/titok_s128.yaml"),
    "titok_b64": ("titok", "base", 64, "configs/titok_b64.yaml"),
    "titok_l32": ("titok", "large", 32, "configs/titok_l32.yaml"),
}


# Types and sane bounds of every config field (the family's `config_fields`), checked before anything is
# built (alit_eval.tokenizers.validate.check_fields): the largest release is width 1024, depth 24.
FIELDS: dict[str, tuple[Any, ...]] = {
    "family": ("choice", FAMILIES, None),
    "width": ("int", 8, 16384),
    "depth": ("int", 1, 128),
    "heads": ("int", 1, 256),
    "dec_width": ("int?", 8, 16384),
    "dec_depth": ("int?", 1, 128),
    "dec_heads": ("int?", 1, 256),
    "num_latent_tokens": ("int", 1, 4096),
    "image_size": ("int", 8, 8192),
    "patch_size": ("int", 1, 256),
    "token_size": ("int", 1, 4096),
    "codebook_size": ("int", 1, 1 << 20),
    "use_l2_norm": ("bool", 0, 1),
    "mlp_ratio": ("int", 1, 16),
    "pixel_hidden": ("int", 32, 4096),
    "pixel_channel_mult": ("ints", 1, 64),
    "pixel_res_blocks": ("int", 1, 16),
    "pixel_z_channels": ("int", 1, 4096),
    "pixel_codebook_size": ("int", 1, 1 << 20),
    "strict_length": ("bool?", 0, 1),
    "preset": ("choice?", tuple(PRESETS), None),
}

@dataclass(frozen=True)
class OneDPieceConfig:
    """Everything needed to build a One-D-Piece or TiTok tokenizer (stage-2, with pixel decoder).

    Attributes:
        family: ``"one_d_piece"`` (prefix decode) or ``"titok"`` (full length only).
        width, depth, heads: encoder transformer size; ``dec_*`` default to the same values.
        num_latent_tokens: N, the 1D tokens the encoder always produces.
        image_size, patch_size: pixel geometry; the 2D grid is ``image_size // patch_size`` per side.
        token_size, codebook_size: the 1D VQ codebook (12-d, 4096 codes); ``use_l2_norm`` as official.
        mlp_ratio: transformer MLP hidden size / width.
        pixel_hidden, pixel_channel_mult, pixel_res_blocks, pixel_z_channels: the MaskGIT-VQGAN
            pixel decoder; ``pixel_codebook_size`` its code count (the decoder's logits channels).
        strict_length: official ``strict_length_assertion``; None takes the family default
            (TiTok True: only N decodes; One-D-Piece False: every prefix 1..N decodes).
        preset: the released variant this config is, if any.
    """

    family: str = "one_d_piece"
    width: int = 512
    depth: int = 8
    heads: int = 8
    dec_width: int | None = None
    dec_depth: int | None = None
    dec_heads: int | None = None
    num_latent_tokens: int = 256
    image_size: int = 256
    patch_size: int = 16
    token_size: int = 12
    codebook_size: int = 4096
    use_l2_norm: bool = True
    mlp_ratio: int = 4
    pixel_hidden: int = 128
    pixel_channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    pixel_res_blocks: int = 2
    pixel_z_channels: int = 256
    pixel_codebook_size: int = 1024
    strict_length: bool | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        from alit_eval.tokenizers.validate import check_fields

        # Types and bounds first (a file's config is untrusted): nothing below divides by zero.
        check_fields(vars(self), FIELDS)
        for name in ("dec_width", "dec_depth", "dec_heads"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(self, name[4:]))
        if self.strict_length is None:
            object.__setattr__(self, "strict_length", self.family == "titok")
        object.__setattr__(self, "pixel_channel_mult", tuple(int(m) for m in self.pixel_channel_mult))
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        positive = ("width", "depth", "heads", "dec_width", "dec_depth", "dec_heads", "num_latent_tokens",
                    "image_size", "patch_size", "token_size", "codebook_size", "mlp_ratio", "pixel_hidden",
                    "pixel_res_blocks", "pixel_z_channels", "pixel_codebook_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} not divisible by patch_size {self.patch_size}")
        if self.width % self.heads or self.dec_width % self.dec_heads:  # type: ignore[operator]
            raise ValueError(
                f"widths ({self.width}, {self.dec_width}) must be divisible by heads ({self.heads}, {self.dec_heads})"
            )
        if not self.pixel_channel_mult or min(self.pixel_channel_mult) <= 0:
            raise ValueError(f"pixel_channel_mult must be positive ints, got {self.pixel_channel_mult}")
        up = 2 ** (len(self.pixel_channel_mult) - 1)
        if up != self.patch_size:
            raise ValueError(f"the pixel decoder upsamples by {up} but patch_size is {self.patch_size}")
        if self.pixel_hidden % 32:
            raise ValueError(f"pixel_hidden must be a multiple of 32 (GroupNorm groups), got {self.pixel_hidden}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; valid: {', '.join(PRESETS)}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_2d(self) -> int:
        return self.grid * self.grid

    @property
    def budgets(self) -> tuple[int, ...]:
        """Prefix lengths this model decodes: 1..N, or only N under the strict length assertion."""
        if self.strict_length:
            return (self.num_latent_tokens,)
        return tuple(range(1, self.num_latent_tokens + 1))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "OneDPieceConfig":
        """Build from `to_dict` output (e.g. a file's metadata), checking every field first.

        Raises:
            ConfigError: an unknown field, a wrong type or a value out of its bounds.
        """
        from alit_eval.tokenizers.validate import check_config_dict

        check_config_dict(d, FIELDS)
        d = dict(d)
        if "pixel_channel_mult" in d:
            d["pixel_channel_mult"] = tuple(d["pixel_channel_mult"])
        return cls(**d)

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> "OneDPieceConfig":
        """The config of a released variant (names in `PRESETS`), with optional field overrides."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
        family, size, n, _ = PRESETS[preset]
        w, d, h = SIZES[size]
        kw: dict[str, Any] = dict(family=family, width=w, depth=d, heads=h, num_latent_tokens=n, preset=preset)
        kw.update(overrides)
        return cls(**kw)


def _depth(sd: Mapping[str, Any], prefix: str) -> int:
    idx = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(idx) + 1 if idx else 0


def _heads(width: int, depth: int) -> int | None:
    for w, d, h in SIZES.values():
        if (w, d) == (width, depth):
            return h
    return None


def infer_config(
    sd: Mapping[str, Any], *, heads: int | None = None, family: str | None = None
) -> OneDPieceConfig:
    """Infer a config from an official One-D-Piece / TiTok state_dict (shapes only).

    Heads are not stored in the weights: they come from `heads` or from the official size table.
    The family is not stored either (One-D-Piece and TiTok files have the same keys): it is `family`
    if given, else the family of the released preset with the same width, depth and N, else
    One-D-Piece (the only family whose evaluation decodes prefixes).

    Raises:
        KeyError: keys of another model.
        ValueError: heads not determinable, or inconsistent shapes.
    """
    n, width = (int(s) for s in sd["latent_tokens"].shape)
    depth = _depth(sd, "encoder.transformer.")
    dec_width = int(sd["decoder.decoder_embed.weight"].shape[0])
    dec_depth = _depth(sd, "decoder.transformer.")
    codebook, token_size = (int(s) for s in sd["quantize.embedding.weight"].shape)
    patch = int(sd["encoder.patch_embed.weight"].shape[-1])
    grid = int(round((int(sd["encoder.positional_embedding"].shape[0]) - 1) ** 0.5))
    pix_codes, z_channels = (int(s) for s in sd["pixel_quantize.embedding.weight"].shape)
    hidden = int(sd["pixel_decoder.norm_out.weight"].shape[0])
    levels = sorted({int(m.group(1)) for k in sd if (m := re.match(r"pixel_decoder\.up\.(\d+)\.", k))})
    mult = tuple(int(sd[f"pixel_decoder.up.{i}.block.0.conv1.weight"].shape[0]) // hidden for i in levels)
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"pixel_decoder\.up\.0\.block\.(\d+)\.", k))}

    def pick(w: int, d: int) -> int:
        if heads:
            return int(heads)
        h = _heads(w, d)
        if h is None:
            raise ValueError(
                f"cannot tell the attention heads for width {w}, depth {d} (not stored in the weights, and no "
                "official size matches); pass --heads N (heads= in the Python API)"
            )
        return h

    enc_heads, dec_heads = pick(width, depth), pick(dec_width, dec_depth)
    preset = None
    for name, (fam, size, pn, _) in PRESETS.items():
        if (SIZES[size], pn) == ((width, depth, enc_heads), n) and (dec_width, dec_depth) == (width, depth):
            if family in (None, fam):
                preset = name
    if family is None:
        family = PRESETS[preset][0] if preset else "one_d_piece"
    return OneDPieceConfig(
        family=family, width=width, depth=depth, heads=enc_heads, dec_width=dec_width, dec_depth=dec_depth,
        dec_heads=dec_heads, num_latent_tokens=n, image_size=grid * patch, patch_size=patch, token_size=token_size,
        codebook_size=codebook, pixel_hidden=hidden, pixel_channel_mult=mult, pixel_res_blocks=len(blocks),
        pixel_z_channels=z_channels, pixel_codebook_size=pix_codes, preset=preset,
    )


def config_from_official_yaml(cfg: Mapping[str, Any], *, heads: int | None = None) -> OneDPieceConfig:
    """Config from an official yaml, already parsed to a dict (``model.type`` and ``model.vq_model``).

    Sizes named ``small``/``base``/``large`` map to the official table; any other size name needs
    `heads` and is only usable together with `infer_config` on the weights.

    Raises:
        ValueError: not a One-D-Piece/TiTok config, or an unknown size without weights.
    """
    model = cfg.get("model", cfg)
    family = model.get("type")
    if family not in FAMILIES:
        raise ValueError(f"model.type must be one of {FAMILIES}, got {family!r}")
    vq = model.get("vq_model") or {}
    sizes = []
    for key in ("vit_enc_model_size", "vit_dec_model_size"):
        size = vq.get(key)
        if size not in SIZES:
            raise ValueError(f"{key} {size!r} is not an official size ({', '.join(SIZES)}); infer from the weights")
        sizes.append(SIZES[size])
    (w, d, h), (dw, dd, dh) = sizes
    if vq.get("vit_enc_patch_size", 16) != vq.get("vit_dec_patch_size", 16):
        raise ValueError("encoder and decoder patch sizes differ; not supported")
    if "num_latent_tokens" not in vq:
        raise ValueError("model.vq_model.num_latent_tokens is missing")
    n = int(vq["num_latent_tokens"])
    strict = vq.get("strict_length_assertion")
    preset = None
    for name, (fam, size, pn, _) in PRESETS.items():
        if fam == family and SIZES[size] == (w, d, h) == (dw, dd, dh) and pn == n:
            preset = name
    return OneDPieceConfig(
        family=family, width=w, depth=d, heads=heads or h, dec_width=dw, dec_depth=dd, dec_heads=heads or dh,
        num_latent_tokens=n, patch_size=int(vq.get("vit_enc_patch_size", 16)),
        token_size=int(vq.get("token_size", 12)), codebook_size=int(vq.get("codebook_size", 4096)),
        use_l2_norm=bool(vq.get("use_l2_norm", True)),
        strict_length=None if strict is None else bool(strict), preset=preset,
    )
