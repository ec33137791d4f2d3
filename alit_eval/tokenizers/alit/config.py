"""ALIT configuration: the dataclass, the four official presets, and inference from a state_dict.

Geometry (image size, patch size, tokens per iteration, iterations) is configuration with the
official values as defaults, so the small demo tokenizer runs on exactly the same model code.
Sources: alit_official.md §1.13 (presets, shared hyperparameters) and §2 (how to infer a preset).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from alit_eval.errors import ConfigError
from alit_eval.tokenizers.base2d.config import FIELDS as BASE_FIELDS
from alit_eval.tokenizers.base2d.config import Base2DConfig, infer_base_config, observed_base_fields
from alit_eval.tokenizers.common.heads import pick_heads
from alit_eval.tokenizers.validate import (
    check_claims,
    check_config_dict,
    check_fields,
    check_value,
    dim,
    layer_count,
    show_value,
)

# Heads cannot be read from shapes (alit_official.md §2): they come from this table.
PRESETS: dict[str, dict[str, int]] = {
    "alit_tiny": {"width": 512, "depth": 8, "heads": 8},
    "alit_small": {"width": 1024, "depth": 8, "heads": 8},
    "alit_base": {"width": 768, "depth": 12, "heads": 12},
    "alit_semilarge": {"width": 1024, "depth": 16, "heads": 16},
}

# Types and sane bounds of every config field (the family's `config_fields`), checked before anything
# is built: field -> (kind, low, high), kinds of alit_eval.tokenizers.validate.check_value.
FIELDS: dict[str, tuple[Any, ...]] = {
    "width": ("int", 8, 16384),
    "depth": ("int", 1, 128),
    "heads": ("int", 1, 256),
    "dec_width": ("int?", 8, 16384),
    "dec_depth": ("int?", 1, 128),
    "dec_heads": ("int?", 1, 256),
    "image_size": ("int", 8, 8192),
    "patch_size": ("int", 1, 256),
    "tokens_per_iter": ("int", 1, 4096),
    "iterations": ("int", 1, 1024),
    "quantize": ("bool", 0, 1),
    "codebook_size": ("int", 1, 1 << 20),
    "token_dim": ("int", 1, 4096),
    "mlp_ratio": ("int", 1, 16),
    "halting_threshold": ("float", 0.0, 1.0),
    "base": ("table", BASE_FIELDS, None),
    "preset": ("choice?", tuple(PRESETS), None),
}
ALIT_FIELDS = FIELDS  # its former name


@dataclass(frozen=True)
class AlitConfig:
    """Everything needed to build an ALIT model.

    Attributes:
        width, depth, heads: encoder transformer size; ``dec_*`` default to the same values.
        image_size, patch_size: pixel geometry; the 2D grid is ``image_size // patch_size`` per side and
            must equal the base tokenizer's downsampling.
        tokens_per_iter, iterations: 1D tokens added per recurrent iteration and the iteration cap.
        quantize: 1D tokens vector-quantised (L2-normalised VQ) or continuous.
        codebook_size, token_dim: the 1D VQ codebook (4096 x 12 officially).
        halting_threshold: 0.55 for VQGAN bases; VAE halting is inert in the official code.
        base: the base 2D tokenizer's configuration.
    """

    width: int = 1024
    depth: int = 8
    heads: int = 8
    dec_width: int | None = None
    dec_depth: int | None = None
    dec_heads: int | None = None
    image_size: int = 256
    patch_size: int = 16
    tokens_per_iter: int = 32
    iterations: int = 8
    quantize: bool = True
    codebook_size: int = 4096
    token_dim: int = 12
    mlp_ratio: int = 4
    halting_threshold: float = 0.55
    base: Base2DConfig = field(default_factory=Base2DConfig)
    preset: str | None = None

    def __post_init__(self) -> None:
        # Types and bounds first (a file's config is untrusted), so the checks below cannot divide
        # by zero and nothing is ever built from an absurd value. Raises ConfigError (a ValueError).
        check_fields({k: v for k, v in vars(self).items() if k != "base"}, FIELDS, "")
        if not isinstance(self.base, Base2DConfig):
            raise ConfigError(f"config field base must be a base tokenizer config, not {type(self.base).__name__}")
        for name in ("dec_width", "dec_depth", "dec_heads"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(self, name[4:]))
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} not divisible by patch_size {self.patch_size}")
        if self.base.downsample_factor != self.patch_size:
            raise ConfigError(
                f"base tokenizer downsamples by {self.base.downsample_factor} but patch_size is {self.patch_size}"
            )
        if self.width <= self.base.embed_dim:
            raise ConfigError(f"width {self.width} must exceed the base embed dim {self.base.embed_dim}")
        for w, h, label in ((self.width, self.heads, ""), (self.dec_width, self.dec_heads, "dec_")):
            if w % h:  # type: ignore[operator]
                raise ConfigError(f"config field {label}width = {w} is not divisible by {label}heads = {h}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_2d(self) -> int:
        return self.grid * self.grid

    @property
    def budgets(self) -> tuple[int, ...]:
        return tuple(self.tokens_per_iter * (t + 1) for t in range(self.iterations))

    @property
    def decoder_out(self) -> int:
        return self.base.n_embed if self.base.kind == "vqgan" else self.base.embed_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AlitConfig":
        """Build from `to_dict` output (e.g. a file's metadata), checking every field first.

        Raises:
            ConfigError: an unknown field, a wrong type or a value out of its bounds.
        """
        check_config_dict(d, FIELDS)
        d = dict(d)
        return cls(base=Base2DConfig(**d.pop("base", {})), **d)  # the base makes its lists tuples itself

    @classmethod
    def from_preset(cls, preset: str, base: str = "vqgan", quantize: bool = True, **overrides: Any) -> "AlitConfig":
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
        p = PRESETS[preset]
        kw: dict[str, Any] = dict(
            width=p["width"], depth=p["depth"], heads=p["heads"], quantize=quantize, preset=preset,
            base=Base2DConfig.official(base), halting_threshold=0.55 if base == "vqgan" else 0.025,
        )
        kw.update(overrides)
        return cls(**kw)


def _depth(sd: Mapping[str, Any], prefix: str) -> int:
    return layer_count(sd, prefix)


# Integer fields an official ``args`` namespace may carry, with the config field each one bounds.
_ARG_FIELDS = {"encoder_num_heads": "heads", "decoder_num_heads": "dec_heads"}


def _arg_int(args: Mapping[str, Any], key: str, field_name: str) -> int | None:
    """An integer from the checkpoint's ``args``, checked (4.9 heads is refused, not truncated)."""
    value = args.get(key)
    if value is None:
        return None
    kind, lo, hi = FIELDS.get(field_name) or ("int", 1, 2048)
    check_value(f"args.{key}", value, "int", lo, hi)
    return int(value)


def _check_preset(preset: str | None, width: int, depth: int) -> None:
    """Refuse an ``args.model`` preset whose width and depth disagree with the weights.

    The preset only supplies the heads; a name that disagrees with the shapes is not trusted for them.
    """
    if preset and (PRESETS[preset]["width"], PRESETS[preset]["depth"]) != (width, depth):
        p = PRESETS[preset]
        raise ConfigError(
            f"args.model = {preset!r} (width {p['width']}, depth {p['depth']}) does not match the weights "
            f"(width {width}, depth {depth}); the file's args belong to another model"
        )


def infer_config(
    sd: Mapping[str, Any], *, heads: int | None = None, args: Mapping[str, Any] | None = None
) -> AlitConfig:
    """Infer an `AlitConfig` from an (already unwrapped, gan_losses-free) ALIT state_dict.

    Args:
        sd: state_dict with official key names.
        heads: explicit number of attention heads (overrides everything else).
        args: the checkpoint's ``args`` namespace as a dict, when present (``encoder_num_heads``,
            ``model`` preset name).

    Raises:
        KeyError: when the keys do not look like an ALIT state_dict.
        ValueError: when heads cannot be determined.
    """
    args = dict(args or {})
    model_arg = args.get("model")
    preset = model_arg if isinstance(model_arg, str) and model_arg in PRESETS else None
    arg_heads = {key: _arg_int(args, key, field_name) for key, field_name in _ARG_FIELDS.items()}
    norm_groups = _arg_int(args, "norm_groups", "norm_groups")
    width = int(sd["latent_tokens"].shape[1])
    tokens_per_iter = int(sd["latent_tokens"].shape[0])
    iterations = int(sd["timestep_embedding"].shape[0])
    depth = _depth(sd, "encoder.transformer.")
    dec_depth = _depth(sd, "decoder.transformer.")
    dec_width = int(sd["decoder.decoder_embed.weight"].shape[0])
    token_dim = int(sd["pre_quantizer_mlp.weight"].shape[0])
    patch = int(sd["patch_embed.weight"].shape[-1])
    n_pos = int(sd["encoder_positional_embedding"].shape[0])
    grid = math.isqrt(n_pos - 1) if n_pos >= 1 else 0
    quantize = "quantize.embedding.weight" in sd
    codebook = int(sd["quantize.embedding.weight"].shape[0]) if quantize else 4096
    hidden = sd.get("encoder.transformer.0.mlp.c_fc.weight")
    mlp_ratio = int(hidden.shape[0]) // width if hidden is not None and width and hidden.ndim == 2 else 4
    for name, value in (("width", width), ("depth", depth), ("dec_depth", dec_depth), ("dec_width", dec_width),
                        ("patch_size", patch), ("tokens_per_iter", tokens_per_iter), ("iterations", iterations),
                        ("token_dim", token_dim), ("codebook_size", codebook), ("mlp_ratio", mlp_ratio)):
        # Values read off the tensors are as untrusted as metadata: check before anything divides by them.
        check_value(f"config field {name} (from the weights)", value, *FIELDS[name])
    _check_preset(preset, width, depth)
    base = infer_base_config(sd, norm_groups=norm_groups)
    enc_heads = pick_heads(PRESETS, heads, arg_heads["encoder_num_heads"], preset, width, depth)
    dec_heads = pick_heads(PRESETS, heads, arg_heads["decoder_num_heads"], preset, dec_width, dec_depth)
    if preset is None:
        for name, p in PRESETS.items():
            if (p["width"], p["depth"], p["heads"]) == (width, depth, enc_heads):
                preset = name
    return AlitConfig(
        width=width, depth=depth, heads=enc_heads, dec_width=dec_width, dec_depth=dec_depth,
        dec_heads=dec_heads, image_size=grid * patch, patch_size=patch, tokens_per_iter=tokens_per_iter,
        iterations=iterations, quantize=quantize, codebook_size=codebook, token_dim=token_dim, mlp_ratio=mlp_ratio,
        halting_threshold=0.55 if base.kind == "vqgan" else 0.025, base=base, preset=preset,
    )


# -- the claimed config against the tensors (before any model is built) ------------------------------


def observed_fields(sd: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """Config values the tensors show, as ``field -> (value, evidence)``; unreadable ones are left out."""
    out: dict[str, tuple[Any, str]] = {}

    def put(field_name: str, value: Any, evidence: str) -> None:
        if value is not None:
            out[field_name] = (value, evidence)

    put("width", dim(sd, "latent_tokens", 1), "latent_tokens")
    put("tokens_per_iter", dim(sd, "latent_tokens", 0), "latent_tokens")
    put("iterations", dim(sd, "timestep_embedding", 0), "timestep_embedding")
    put("depth", layer_count(sd, "encoder.transformer."), "encoder.transformer.*")
    put("dec_depth", layer_count(sd, "decoder.transformer."), "decoder.transformer.*")
    put("dec_width", dim(sd, "decoder.decoder_embed.weight", 0), "decoder.decoder_embed.weight")
    put("token_dim", dim(sd, "pre_quantizer_mlp.weight", 0), "pre_quantizer_mlp.weight")
    put("patch_size", dim(sd, "patch_embed.weight", -1), "patch_embed.weight")
    put("quantize", "quantize.embedding.weight" in sd, "quantize.embedding.weight")
    if "quantize.embedding.weight" in sd:
        put("codebook_size", dim(sd, "quantize.embedding.weight", 0), "quantize.embedding.weight")
    n = dim(sd, "encoder_positional_embedding", 0)
    grid = math.isqrt(n - 1) if n and n > 1 else None
    patch = out.get("patch_size", (None,))[0]
    if grid and grid * grid == n - 1 and patch:  # type: ignore[operator]
        put("image_size", grid * patch, "encoder_positional_embedding and patch_embed.weight")
    hidden, width = dim(sd, "encoder.transformer.0.mlp.c_fc.weight", 0), out.get("width", (None,))[0]
    if hidden and width and hidden % width == 0:
        put("mlp_ratio", hidden // width, "encoder.transformer.0.mlp.c_fc.weight")
    return out


def check_against_tensors(cfg: Mapping[str, Any], sd: Mapping[str, Any]) -> None:
    """Refuse a config whose values disagree with the tensors present (before any model is built)."""
    preset = PRESETS.get(cfg.get("preset") or "")
    if preset and any(cfg.get(k) != preset[k] for k in ("width", "depth", "heads")):
        raise ConfigError(
            f"config field preset = {show_value(cfg.get('preset'))} disagrees with width/depth/heads "
            f"{cfg.get('width')}/{cfg.get('depth')}/{cfg.get('heads')} (the preset has "
            f"{preset['width']}/{preset['depth']}/{preset['heads']})"
        )
    flat = {**cfg, **{f"base.{k}": v for k, v in (cfg.get("base") or {}).items()}}
    check_claims(flat, {**observed_fields(sd), **observed_base_fields(sd)})
