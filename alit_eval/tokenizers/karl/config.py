"""KARL configuration: the dataclass, the official presets and released variants, inference from weights.

Sources (karl_official.md): §1 (presets, released files, shared yaml values, key table), §2.3 (the 19
ε bins), §2.5 (halting threshold). KARL (Duggal et al., arXiv 2507.07995) reuses ALIT's base
tokenizers, so the base geometry is a `Base2DConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from alit_eval.tokenizers.base2d.config import FIELDS as BASE_FIELDS
from alit_eval.tokenizers.base2d.config import Base2DConfig, infer_base_config
from alit_eval.tokenizers.common.heads import pick_heads
from alit_eval.tokenizers.validate import check_config_dict, check_fields, check_value, layer_count

# kolmogorov_tokenizers/__init__.py: widths small 512 / base 768 / semi_large 1024. Heads are not stored
# in the weights, so they come from this table (or the checkpoint's args). The ten mixed
# encoder/decoder presets of that file are not released and not listed here (pass heads explicitly).
PRESETS: dict[str, dict[str, int]] = {
    "karl_tiny": {"width": 512, "depth": 8, "heads": 8},
    "karl_small": {"width": 1024, "depth": 8, "heads": 8},  # semi_large width, small depth (released)
    "karl_base": {"width": 768, "depth": 12, "heads": 12},
    "karl_semilarge": {"width": 1024, "depth": 16, "heads": 16},
}

# Every released kind (karl_official.md §1): karl_small x {vqgan, vae} x {quantised, continuous}.
# The ImageNet-1K and ImageNet-100 `vqgan_quantized` files share one architecture.
VARIANTS: dict[str, dict[str, Any]] = {
    "karl_small_vqgan_quantized": {"preset": "karl_small", "base": "vqgan", "quantize": True},
    "karl_small_vqgan_continuous": {"preset": "karl_small", "base": "vqgan", "quantize": False},
    "karl_small_vae_quantized": {"preset": "karl_small", "base": "vae", "quantize": True},
    "karl_small_vae_continuous": {"preset": "karl_small", "base": "vae", "quantize": False},
}

# The reconstruction-error bins of the ε condition token (karl_official.md §2.3), compared in float32.
EPS_BINS: tuple[float, ...] = (
    0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.09, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.24, 0.28, 0.32, 0.38,
)


# Types and sane bounds of every config field (the family's `config_fields`), checked before anything is
# built (alit_eval.tokenizers.validate.check_fields): the largest official preset is width 1024, depth 16.
FIELDS: dict[str, tuple[Any, ...]] = {
    "width": ("int", 8, 16384),
    "depth": ("int", 1, 128),
    "heads": ("int", 1, 256),
    "dec_width": ("int?", 8, 16384),
    "dec_depth": ("int?", 1, 128),
    "dec_heads": ("int?", 1, 256),
    "image_size": ("int", 8, 8192),
    "patch_size": ("int", 1, 256),
    "pos_grid": ("int", 1, 1024),
    "max_tokens": ("int", 1, 4096),
    "quantize": ("bool", 0, 1),
    "codebook_size": ("int", 1, 1 << 20),
    "token_dim": ("int", 1, 4096),
    "mlp_ratio": ("int", 1, 16),
    "halting_hidden": ("int", 1, 16384),
    "halting_threshold": ("float", 0.0, 1.0),
    "eps_bins": ("floats", 0.0, 1e3, 256),
    "default_budgets": ("ints", 1, 4096, 4096),
    "base": ("table", BASE_FIELDS, None),
    "preset": ("choice?", tuple(PRESETS), None),
}
# Integer fields an official ``args`` namespace may carry, with the config field that bounds each.
_ARG_FIELDS = {"encoder_num_heads": "heads", "decoder_num_heads": "dec_heads", "norm_groups": None}

@dataclass(frozen=True)
class KarlConfig:
    """Everything needed to build a KARL model.

    Attributes:
        width, depth, heads: encoder transformer; ``dec_*`` default to the same values.
        image_size, patch_size: pixel geometry; the grid ``image_size // patch_size`` must equal the
            base tokenizer's downsampling and fit the positional tables.
        pos_grid: side of the learned (w, G, G) positional tables, nearest-resized to the grid (64).
        max_tokens: rows of ``latent_tokens`` (512): the largest budget.
        quantize: 1D latents vector-quantised (L2-normalised VQ) or continuous; every released model
            is factorised to ``token_dim`` either way.
        codebook_size, token_dim: the 1D VQ codebook (4096 x 12 officially).
        halting_hidden: hidden width of ``halting_mlp`` (512).
        halting_threshold: a slot is halted iff its halting probability is strictly above this (0.75).
        eps_bins: the ε condition bins; one row of ``rec_loss_embeddings`` each.
        default_budgets: what a sweep evaluates when no budget is given (the official evaluate.py list).
        base: the base 2D tokenizer's configuration.
        preset: the official preset name, when known.
    """

    width: int = 1024
    depth: int = 8
    heads: int = 8
    dec_width: int | None = None
    dec_depth: int | None = None
    dec_heads: int | None = None
    image_size: int = 256
    patch_size: int = 16
    pos_grid: int = 64
    max_tokens: int = 512
    quantize: bool = True
    codebook_size: int = 4096
    token_dim: int = 12
    mlp_ratio: int = 4
    halting_hidden: int = 512
    halting_threshold: float = 0.75
    eps_bins: tuple[float, ...] = EPS_BINS
    default_budgets: tuple[int, ...] = (32, 64, 96, 128, 160, 192, 224, 256)
    base: Base2DConfig = field(default_factory=Base2DConfig)
    preset: str | None = None

    def __post_init__(self) -> None:
        # Types and bounds first (a file's config is untrusted): nothing below divides by zero.
        check_fields({k: v for k, v in vars(self).items() if k != "base"}, FIELDS)
        if not isinstance(self.base, Base2DConfig):
            raise ValueError(f"config field base must be a base tokenizer config, not {type(self.base).__name__}")
        for name in ("dec_width", "dec_depth", "dec_heads"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(self, name[4:]))
        object.__setattr__(self, "eps_bins", tuple(float(e) for e in self.eps_bins))
        object.__setattr__(self, "default_budgets", tuple(int(b) for b in self.default_budgets))
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} not divisible by patch_size {self.patch_size}")
        if self.base.downsample_factor != self.patch_size:
            raise ValueError(
                f"base tokenizer downsamples by {self.base.downsample_factor} but patch_size is {self.patch_size}"
            )
        if self.grid > self.pos_grid:
            raise ValueError(f"grid {self.grid} exceeds the positional tables' side {self.pos_grid}")
        if self.width <= self.base.embed_dim:
            raise ValueError(f"width {self.width} must exceed the base embed dim {self.base.embed_dim}")
        if self.width % self.heads or self.dec_width % self.dec_heads:  # type: ignore[operator]
            raise ValueError(
                f"widths {self.width}/{self.dec_width} not divisible by heads {self.heads}/{self.dec_heads}"
            )
        if not self.eps_bins or list(self.eps_bins) != sorted(self.eps_bins):
            raise ValueError(f"eps_bins must be a non-empty ascending sequence, got {self.eps_bins}")
        if not 0.0 < self.halting_threshold < 1.0:
            raise ValueError(f"halting_threshold must lie in (0, 1), got {self.halting_threshold}")
        if not all(1 <= b <= self.max_tokens for b in self.default_budgets):
            raise ValueError(f"default_budgets must lie in 1..{self.max_tokens}, got {self.default_budgets}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_2d(self) -> int:
        return self.grid * self.grid

    @property
    def budgets(self) -> tuple[int, ...]:
        """Every token count the model can produce: any slot count 1..max_tokens (one pass each)."""
        return tuple(range(1, self.max_tokens + 1))

    @property
    def decoder_out(self) -> int:
        return self.base.n_embed if self.base.kind == "vqgan" else self.base.embed_dim

    @property
    def variant(self) -> str:
        """``<preset or 'karl'>_<base>_<quantized|continuous>``, the released-file naming."""
        return f"{self.preset or 'karl'}_{self.base.kind}_{'quantized' if self.quantize else 'continuous'}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "KarlConfig":
        """Build from `to_dict` output (e.g. a file's metadata), checking every field first.

        Raises:
            ConfigError: an unknown field, a wrong type or a value out of its bounds.
        """
        check_config_dict(d, FIELDS)
        d = dict(d)
        return cls(base=Base2DConfig(**d.pop("base", {})), **d)  # the base makes its lists tuples itself

    @classmethod
    def from_preset(cls, preset: str, base: str = "vqgan", quantize: bool = True, **overrides: Any) -> "KarlConfig":
        """An official architecture preset on an official base (``vqgan`` or ``vae``)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown KARL preset {preset!r}; valid: {', '.join(PRESETS)}")
        p = PRESETS[preset]
        kw: dict[str, Any] = dict(width=p["width"], depth=p["depth"], heads=p["heads"], quantize=quantize,
                                  preset=preset, base=Base2DConfig.official(base))
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def from_variant(cls, variant: str) -> "KarlConfig":
        """The configuration of a released kind, e.g. ``karl_small_vae_continuous`` (see `VARIANTS`)."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown KARL variant {variant!r}; released: {', '.join(VARIANTS)}")
        v = VARIANTS[variant]
        return cls.from_preset(v["preset"], base=v["base"], quantize=v["quantize"])


def _arg_int(args: Mapping[str, Any], key: str, field_name: str | None) -> int | None:
    """An integer from the checkpoint's ``args``, checked (4.9 heads is refused, not truncated)."""
    value = args.get(key)
    if value is None:
        return None
    kind, lo, hi = FIELDS[field_name][:3] if field_name else ("int", 1, 2048)
    check_value(f"args.{key}", value, "int", lo, hi)
    return int(value)


def _depth(sd: Mapping[str, Any], prefix: str) -> int:
    return layer_count(sd, prefix)


def _check_args(args: Mapping[str, Any], base_kind: str, quantize: bool) -> None:
    """Refuse a file whose ``args`` contradict the weights on the base tokenizer or the quantisation."""
    if args.get("base_tokenizer") not in (None, base_kind):
        raise ValueError(f"args say base {args['base_tokenizer']!r} but the weights hold a {base_kind} base")
    if args.get("quantize_latent") is not None and bool(args["quantize_latent"]) != quantize:
        raise ValueError(f"args say quantize_latent={args['quantize_latent']} but the weights say {quantize}")


def infer_config(
    sd: Mapping[str, Any], *, heads: int | None = None, args: Mapping[str, Any] | None = None,
    image_size: int | None = None,
) -> KarlConfig:
    """Infer a `KarlConfig` from a KARL state_dict (official key names, ``gan_losses.*`` dropped).

    Shapes give widths, depths, table sizes, base and quantisation (karl_official.md §1, key table);
    heads come from `heads`, else ``args`` (``encoder_num_heads``/``decoder_num_heads``, or the preset
    named by ``args.model``), else the preset with the same width and depth.

    Args:
        sd: state_dict (tensors or anything with ``.shape``, e.g. meta tensors).
        heads: explicit attention heads for encoder and decoder.
        args: the checkpoint's ``args`` namespace as a dict, when present.
        image_size: pixel size; not visible in the weights, default ``16 * patch`` (the official code
            asserts a 16x16 grid).

    Raises:
        KeyError: a key KARL needs is absent.
        ValueError: heads cannot be determined, or ``args`` contradict the weights.
    """
    args = dict(args or {})
    max_tokens, width = (int(s) for s in sd["latent_tokens"].shape)
    dec_width = int(sd["decoder_embed.weight"].shape[0])
    depth, dec_depth = _depth(sd, "encoder.transformer."), _depth(sd, "decoder.transformer.")
    if not depth or not dec_depth:
        raise KeyError("encoder.transformer.0.* / decoder.transformer.0.*")
    token_dim = int(sd["pre_quantizer_mlp.weight"].shape[0])
    patch = int(sd["patch_embed.weight"].shape[-1])
    pos_grid = int(sd["encoder_positional_embedding"].shape[-1])
    n_bins = int(sd["rec_loss_embeddings"].shape[0])
    if n_bins != len(EPS_BINS):
        raise ValueError(f"rec_loss_embeddings has {n_bins} rows; KARL's official ε bins are {len(EPS_BINS)}")
    quantize = "quantize.embedding.weight" in sd
    codebook = int(sd["quantize.embedding.weight"].shape[0]) if quantize else 4096
    # GroupNorm groups are not visible in the weights: the official 32 holds only for the official base
    # geometry, else the file's args must say (infer_base_config refuses, naming the field).
    arg_ints = {key: _arg_int(args, key, field_name) for key, field_name in _ARG_FIELDS.items()}
    groups = arg_ints["norm_groups"]
    base = infer_base_config(sd, norm_groups=groups)
    _check_args(args, base.kind, quantize)
    preset = args.get("model") if args.get("model") in PRESETS else None
    enc_heads = pick_heads(PRESETS, heads, arg_ints["encoder_num_heads"], preset, width, depth)
    dec_heads = pick_heads(PRESETS, heads, arg_ints["decoder_num_heads"], preset, dec_width, dec_depth)
    if preset is None:
        for name, p in PRESETS.items():
            same = (p["width"], p["depth"], p["heads"])
            if same == (width, depth, enc_heads) == (dec_width, dec_depth, dec_heads):
                preset = name
    return KarlConfig(
        width=width, depth=depth, heads=enc_heads, dec_width=dec_width, dec_depth=dec_depth, dec_heads=dec_heads,
        image_size=int(image_size or 16 * patch),
        patch_size=patch, pos_grid=pos_grid, max_tokens=max_tokens, quantize=quantize, codebook_size=codebook,
        token_dim=token_dim, halting_hidden=int(sd["halting_mlp.0.weight"].shape[0]), base=base, preset=preset,
        default_budgets=tuple(b for b in KarlConfig.default_budgets if b <= max_tokens) or (max_tokens,),
    )
